// Data sources of the contract: a SOURCE names a sequence of items (images, texts or vectors,
// optionally with labels) with random access by index, so that batches, shards and resumed
// runs all see the same item at the same index.
//   fashion-mnist:train|test   images [1,28,28] in [-1,1] + labels (the Debian package's files)
//   images:DIR                 PNG/JPEG files sorted by name, [C,H,W] in [-1,1]
//   text:FILE                  one item per line
//   tsv:FILE                   texts with a header: column text, optional label (+ labels) and
//                              numeric columns (a vector per item, which `identity` returns)
//   h5:FILE:DATASET            rows of an HDF5 dataset (+ /label of that file when present)
//   gaussian:N:DIM[:TRUNC]     seeded standard normal codes, truncated to |x| <= TRUNC
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace net2net::data {

enum class ItemKind { Image, Text, Vector };
std::string kind_name(ItemKind kind);

struct Batch {
  std::vector<int64_t> index;      // source index of each item
  ItemKind kind = ItemKind::Vector;
  torch::Tensor tensor;            // images [B,C,H,W] float32 in [-1,1], or vectors [B,D] float32
  std::vector<std::string> texts;  // kind Text
  torch::Tensor labels;            // int64 [B]; undefined when the source has none
  int64_t size() const { return static_cast<int64_t>(index.size()); }
};

class Source {
 public:
  virtual ~Source() = default;
  virtual std::string spec() const = 0;
  virtual int64_t size() const = 0;
  virtual ItemKind kind() const = 0;
  virtual bool has_labels() const { return false; }
  // Number of classes for one-hot labels (0: unknown).
  virtual int64_t num_classes() const { return 0; }
  // Items at `indices` (each in [0, size())), in that order.
  virtual Batch get(const std::vector<int64_t>& indices) = 0;
};

struct SourceOptions {
  std::string data_dir;  // Fashion-MNIST folder; empty: NET2NET_FASHION_MNIST_DIR or the Debian path
  uint64_t seed = 23;    // for gaussian:
};

// UsageError for a malformed spec, IoError / InputError naming the file for unreadable data.
std::unique_ptr<Source> open_source(const std::string& spec, const SourceOptions& options = {});

// The ten Fashion-MNIST class names, by label.
const std::vector<std::string>& fashion_mnist_classes();
std::string default_fashion_mnist_dir();

// Decoded image as float32 [C,H,W] in [-1,1]; channels: 1 (grey) or 3 (RGB); 0 keeps the file's
// (grey stays grey, anything with colour becomes RGB). InputError naming the file.
torch::Tensor read_image(const std::string& path, int channels = 0);
// Writes [C,H,W] in [-1,1] (C = 1 or 3) as PNG, atomically. IoError naming the file.
void write_png(const std::string& path, const torch::Tensor& image);

}  // namespace net2net::data
