// Experts map a batch of items to a batch of vectors (or images):
//   label[:K]         one-hot of the item's label (K classes; default: the source's count)
//   text-hash[:DIM]   deterministic, weight-free text embedding (default DIM 256)
//   identity          the item itself (vectors or images; a tsv source's numeric columns)
//   ts:PATH[:METHOD]  a TorchScript module; METHOD defaults to encode, falling back to forward;
//                     decode is the target side's decoder
//   caption           Fashion-MNIST images (+ labels) -> texts: the class name with properties
//                     (dark / light, small / large: class-relative tertiles), for chains such
//                     as caption,text-hash:256; caption-props gives the property codes
//                     [N, 2] (brightness, size: -1, 0, +1)
//   A,B,...           a chain: each expert's output is the next one's input
// Inputs reach experts as the contract says: images float32 [N,C,H,W] in [-1,1], texts as a
// list of strings, vectors float32 [N,D].
#pragma once
#include <torch/torch.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "net2net/data/source.h"

namespace net2net::experts {

class Expert {
 public:
  virtual ~Expert() = default;
  virtual std::string spec() const = 0;
  // Output for the batch, float32 on the CPU, [B, D] or [B, C, H, W].
  virtual torch::Tensor encode(const data::Batch& batch) = 0;
  // The output as the next link's input in a chain (default: encode's tensor as vectors or
  // images; the caption expert turns images into texts here).
  virtual data::Batch transform(const data::Batch& batch);
  virtual bool can_decode() const { return false; }
  virtual torch::Tensor decode(const torch::Tensor& z);
  // What identifies the expert's function: its spec and the SHA-256 of any file it loads.
  virtual nlohmann::json fingerprint() const;
};

struct ExpertContext {
  int64_t num_classes = 0;          // from the source, for label
  torch::Device device = torch::kCPU;
};

// UsageError for a malformed spec, IoError / InputError naming the file for a bad module.
std::unique_ptr<Expert> make_expert(const std::string& spec, const ExpertContext& context = {});

// The weight-free text embedding of text-hash: hashed word unigrams and bigrams and character
// trigrams, signed feature hashing, L2-normalised (texts sharing words and spellings are close).
torch::Tensor text_hash(const std::vector<std::string>& texts, int64_t dim);

// Caption property codes [N, 2]: brightness (-1 dark, 0, +1 light) and size (-1 small, 0,
// +1 large), relative to the item's class (expert caption-props).
torch::Tensor fashion_properties(const data::Batch& batch);
// The caption of each image of a batch (needs labels): "a dark large coat", "a sandal", ...
std::vector<std::string> fashion_captions(const data::Batch& batch);

// SHA-256 of a file as lowercase hex (OpenSSL). IoError naming the file.
std::string sha256_file(const std::string& path);

// Wraps an expert output as the next expert's input batch (a chain link).
data::Batch as_batch(const torch::Tensor& output, const data::Batch& like);

}  // namespace net2net::experts
