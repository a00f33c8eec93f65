// Experts map a batch of items to a batch of vectors (or images). A spec is NAME[:ARGUMENT],
// or a chain A,B,... (each expert's output is the next one's input). The kinds are the entries
// of expert_registry(): the engine's (expert.cpp) and the Fashion-MNIST example's
// (example/captions.cpp), each with its usage and a description; docs/experts.md lists the
// same, which tests/test_data.cpp checks.
// Inputs reach experts as the contract says: images float32 [N,C,H,W] in [-1,1], texts as a
// list of strings, vectors float32 [N,D].
#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "net2net/core/error.h"
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

// One kind of expert: a spec NAME or NAME:ARGUMENT is made by the entry called NAME.
struct ExpertKind {
  std::string name;         // "text-hash"
  std::string usage;        // "text-hash[:DIM]" (help texts, error messages, docs/experts.md)
  std::string description;  // one line
  // argument: what follows "NAME:" ("" when absent: each kind says whether that is allowed);
  // spec: the whole spec, for messages and Expert::spec().
  std::function<std::unique_ptr<Expert>(const std::string& argument, const std::string& spec, const ExpertContext& context)>
      make;
};

class ExpertRegistry {
 public:
  // Adds a kind after those already there; std::logic_error when its name is taken.
  void add(ExpertKind kind);
  // The kind called `name`; nullptr when there is none.
  const ExpertKind* find(const std::string& name) const;
  const std::vector<ExpertKind>& kinds() const { return kinds_; }

 private:
  std::vector<ExpertKind> kinds_;
};

// The kind of an expert E that takes no argument (a UsageError when one is given): identity,
// caption, sketch, ...
template <class E>
ExpertKind no_argument_kind(const char* name, const char* description) {
  return {name, name, description, [name](const std::string& arg, const std::string&, const ExpertContext&) -> std::unique_ptr<Expert> {
            if (!arg.empty()) throw UsageError(std::string("expert '") + name + "' takes no argument");
            return std::make_unique<E>();
          }};
}

// The kinds make_expert knows, built on first use: the engine's, then the example's
// (example::register_example_experts).
const ExpertRegistry& expert_registry();
// The usage of a chain: syntax, not a registry entry.
inline constexpr const char* kChainUsage = "A,B,...";
// The usages joined, with the chain: "label[:K], ..., or a chain A,B,..." (net2net-extract
// --help, errors).
std::string expert_usages();

// UsageError for a malformed spec or an unknown name (the message lists expert_usages()),
// IoError / InputError naming the file for a bad module.
std::unique_ptr<Expert> make_expert(const std::string& spec, const ExpertContext& context = {});

// The weight-free text embedding of text-hash: hashed word unigrams and bigrams and character
// trigrams, signed feature hashing, L2-normalised (texts sharing words and spellings are close).
torch::Tensor text_hash(const std::vector<std::string>& texts, int64_t dim);

// SHA-256 of a file as lowercase hex (OpenSSL). IoError naming the file.
std::string sha256_file(const std::string& path);

// Wraps an expert output as the next expert's input batch (a chain link).
data::Batch as_batch(const torch::Tensor& output, const data::Batch& like);

}  // namespace net2net::experts
