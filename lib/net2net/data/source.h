// Data sources of the contract: a SOURCE names a sequence of items (images, texts or vectors,
// optionally with labels) with random access by index, so that batches, shards and resumed
// runs all see the same item at the same index. A spec is SCHEME:ARGUMENT; the schemes are the
// entries of source_schemes() (source.cpp), each with its usage and a description; docs/formats.md
// ("Data sources") lists the same, which tests/test_data.cpp checks.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "net2net/core/defaults.h"

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
  // Names of the classes, index by index (empty: none known; then "class K").
  virtual std::vector<std::string> class_names() const { return {}; }
  // Items at `indices` (each in [0, size())), in that order.
  virtual Batch get(const std::vector<int64_t>& indices) = 0;
};

struct SourceOptions {
  std::string data_dir;  // Fashion-MNIST folder; empty: NET2NET_FASHION_MNIST_DIR or the Debian path
  uint64_t seed = kDefaultSeed;  // for gaussian:
  // images: and imagefolder:
  int64_t image_size = 0;   // > 0: shorter side resized to it (bilinear, antialiased), centre crop to square
  std::string image_mode;   // "rgb" | "grey"; empty: as the first image (3 channels if it has colour)
  bool skip_bad = false;    // unreadable or odd-sized files are skipped (counted), not an error
};

// One source scheme: a spec NAME:ARGUMENT is opened by the entry called NAME.
struct SourceScheme {
  std::string name;         // "h5"
  std::string usage;        // "h5:FILE:DATASET" (help texts, error messages, docs/formats.md)
  std::string description;  // one line
  // argument: what follows "NAME:" (never empty: open_source refuses NAME and NAME: with the
  // usage); spec: the whole spec, for messages and Source::spec().
  std::function<std::unique_ptr<Source>(const std::string& argument, const std::string& spec, const SourceOptions& options)>
      open;
};
// Every scheme, in the order of source_usages().
const std::vector<SourceScheme>& source_schemes();
// The usages joined: "fashion-mnist:train|test, images:DIR, ..." (net2net-extract --help, errors).
std::string source_usages();

// UsageError for a malformed spec or an unknown scheme (the message lists source_usages()),
// IoError / InputError naming the file for unreadable data.
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
