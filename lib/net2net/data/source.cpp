#include "net2net/data/source.h"

#include <stb/stb_image.h>
#include <stb/stb_image_write.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>

#include "net2net/core/atomic_file.h"
#include "net2net/core/error.h"
#include "net2net/io/embedding_store.h"
#include <spdlog/spdlog.h>

namespace net2net::data {
namespace fs = std::filesystem;

std::string kind_name(ItemKind kind) {
  switch (kind) {
    case ItemKind::Image: return "image";
    case ItemKind::Text: return "text";
    case ItemKind::Vector: return "vector";
  }
  return "?";
}

const std::vector<std::string>& fashion_mnist_classes() {
  static const std::vector<std::string> names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                 "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  return names;
}

std::string default_fashion_mnist_dir() {
  if (const char* env = std::getenv("NET2NET_FASHION_MNIST_DIR")) return env;
  return "/usr/share/datasets/fashion-mnist";
}

namespace {

// Labels are class numbers in [0, kMaxLabel): far beyond any label set, and a bound on the
// one-hot width the label expert makes from the largest one (and on label + 1).
constexpr int64_t kMaxLabel = int64_t(1) << 24;
// Images are at most this many pixels wide and high: decoded batches are allocated from headers.
constexpr int kMaxImageSide = 16384;

void check_index(int64_t i, int64_t n, const std::string& spec) {
  if (i < 0 || i >= n)
    throw InputError("source '" + spec + "': item " + std::to_string(i) + " is out of range (it has " + std::to_string(n) + ")");
}

// ---------------------------------------------------------------- Fashion-MNIST (gzipped IDX)
std::vector<uint8_t> gunzip_file(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec))
    throw IoError("'" + path + "' does not exist (install the Debian package dataset-fashion-mnist, or pass --data-dir)");
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw IoError("cannot open '" + path + "'");
  std::vector<uint8_t> out;
  std::vector<uint8_t> buf(1 << 20);
  while (true) {
    int n = gzread(f, buf.data(), static_cast<unsigned>(buf.size()));
    if (n < 0) {
      int err = 0;
      std::string msg = gzerror(f, &err);
      gzclose(f);
      throw InputError("'" + path + "' is not a valid gzip file: " + msg);
    }
    if (n == 0) break;
    out.insert(out.end(), buf.begin(), buf.begin() + n);
  }
  int err = 0;
  gzerror(f, &err);
  gzclose(f);
  if (err != Z_OK && err != Z_STREAM_END) throw InputError("'" + path + "' is a corrupt gzip file");
  return out;
}

uint32_t be32(const std::vector<uint8_t>& b, size_t at) {
  return (uint32_t(b[at]) << 24) | (uint32_t(b[at + 1]) << 16) | (uint32_t(b[at + 2]) << 8) | uint32_t(b[at + 3]);
}

class FashionMnist : public Source {
 public:
  FashionMnist(const std::string& split, const std::string& dir) : spec_("fashion-mnist:" + split) {
    std::string prefix = split == "train" ? "train" : "t10k";
    std::string img_path = dir + "/" + prefix + "-images-idx3-ubyte.gz";
    std::string lbl_path = dir + "/" + prefix + "-labels-idx1-ubyte.gz";
    images_ = gunzip_file(img_path);
    labels_ = gunzip_file(lbl_path);
    if (images_.size() < 16 || be32(images_, 0) != 2051)
      throw InputError("'" + img_path + "' is not an IDX image file (magic 2051)");
    if (labels_.size() < 8 || be32(labels_, 0) != 2049)
      throw InputError("'" + lbl_path + "' is not an IDX label file (magic 2049)");
    n_ = be32(images_, 4);
    h_ = be32(images_, 8);
    w_ = be32(images_, 12);
    // The header is untrusted: with sides <= 2^16 and n < 2^32, n * h * w < 2^64 cannot wrap.
    constexpr int64_t kMaxSide = int64_t(1) << 16;
    if (h_ < 1 || w_ < 1 || h_ > kMaxSide || w_ > kMaxSide)
      throw InputError("'" + img_path + "': header says images of " + std::to_string(h_) + "x" + std::to_string(w_) +
                       " pixels; sides must be 1 to " + std::to_string(kMaxSide));
    if (images_.size() - 16 != uint64_t(n_) * uint64_t(h_ * w_))
      throw InputError("'" + img_path + "' is truncated or too long: header says " + std::to_string(n_) + " images of " +
                       std::to_string(h_) + "x" + std::to_string(w_) + ", the file holds " + std::to_string(images_.size() - 16) +
                       " bytes of pixels");
    if (be32(labels_, 4) != uint32_t(n_) || labels_.size() != 8 + size_t(n_))
      throw InputError("'" + lbl_path + "' does not hold " + std::to_string(n_) + " labels");
    for (int64_t i = 0; i < n_; ++i)
      if (labels_[8 + i] > 9) throw InputError("'" + lbl_path + "': row " + std::to_string(i) + " has label > 9");
  }
  std::string spec() const override { return spec_; }
  int64_t size() const override { return n_; }
  ItemKind kind() const override { return ItemKind::Image; }
  bool has_labels() const override { return true; }
  int64_t num_classes() const override { return 10; }
  std::vector<std::string> class_names() const override { return fashion_mnist_classes(); }
  Batch get(const std::vector<int64_t>& indices) override {
    Batch b;
    b.index = indices;
    b.kind = ItemKind::Image;
    const int64_t B = indices.size(), px = h_ * w_;
    for (int64_t i : indices) check_index(i, n_, spec_);  // before allocating for them
    b.tensor = torch::empty({B, 1, h_, w_});
    b.labels = torch::empty({B}, torch::kLong);
    float* t = b.tensor.data_ptr<float>();
    int64_t* l = b.labels.data_ptr<int64_t>();
    for (int64_t r = 0; r < B; ++r) {
      const uint8_t* src = images_.data() + 16 + indices[r] * px;
      for (int64_t k = 0; k < px; ++k) t[r * px + k] = src[k] / 127.5f - 1.0f;
      l[r] = labels_[8 + indices[r]];
    }
    return b;
  }

 private:
  std::string spec_;
  std::vector<uint8_t> images_, labels_;
  int64_t n_ = 0, h_ = 0, w_ = 0;
};

// ---------------------------------------------------------------- images:DIR, imagefolder:DIR
// images:DIR: the PNG/JPEG files of DIR, sorted by name, unlabelled. imagefolder:DIR: torchvision's
// ImageFolder convention, one sub-folder per class (sorted names: the labels 0, 1, ...; the names
// are the class names), the images under each (any depth), sorted by path. Every file's header is
// read when the source opens, so that an unreadable or odd-sized file is named before any work
// (or skipped and counted with SourceOptions::skip_bad); with image_size the sizes may differ.
bool is_image_file(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg";
}

class ImageDir : public Source {
 public:
  ImageDir(const std::string& dir, const SourceOptions& options, bool folders)
      : spec_((folders ? "imagefolder:" : "images:") + dir), size_(options.image_size), folders_(folders) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) throw IoError("image folder '" + dir + "' does not exist");
    if (options.image_mode != "" && options.image_mode != "rgb" && options.image_mode != "grey")
      throw UsageError("image mode must be rgb or grey, got '" + options.image_mode + "'");
    if (size_ < 0 || size_ > kMaxImageSide) throw UsageError("image size must be in 1.." + std::to_string(kMaxImageSide));
    std::vector<std::pair<std::string, int64_t>> candidates;  // (file, label)
    if (folders) {
      std::vector<fs::path> classes;
      for (const auto& e : fs::directory_iterator(dir))
        if (e.is_directory()) classes.push_back(e.path());
      std::sort(classes.begin(), classes.end());
      if (classes.empty()) throw InputError("image folder '" + dir + "' has no class sub-folders (imagefolder:DIR wants DIR/CLASS/*.png)");
      for (size_t k = 0; k < classes.size(); ++k) {
        names_.push_back(classes[k].filename().string());
        // torchvision's order: sorted(os.walk(CLASS, followlinks=True)), the files of each folder sorted.
        std::vector<std::pair<std::string, std::string>> files;  // (folder, name)
        try {
          for (const auto& e : fs::recursive_directory_iterator(classes[k], fs::directory_options::follow_directory_symlink))
            if (e.is_regular_file() && is_image_file(e.path()))
              files.emplace_back(e.path().parent_path().string(), e.path().filename().string());
        } catch (const fs::filesystem_error& e) {
          throw IoError("image folder '" + classes[k].string() + "': " + e.what());
        }
        if (files.empty())
          throw InputError("class folder '" + classes[k].string() + "' has no .png/.jpg/.jpeg files (torchvision's "
                           "ImageFolder refuses it too; remove it or add images)");
        std::sort(files.begin(), files.end());
        for (auto& [folder, name] : files) candidates.emplace_back((fs::path(folder) / name).string(), static_cast<int64_t>(k));
      }
    } else {
      std::vector<std::string> files;
      for (const auto& e : fs::directory_iterator(dir))
        if (e.is_regular_file() && is_image_file(e.path())) files.push_back(e.path().string());
      std::sort(files.begin(), files.end());
      for (auto& f : files) candidates.emplace_back(std::move(f), -1);
    }
    if (candidates.empty()) throw InputError("image folder '" + dir + "' has no .png/.jpg/.jpeg files");
    int64_t skipped = 0;
    std::string first_skipped;
    for (const auto& [file, label] : candidates) {
      int w, h, c;
      std::string problem;
      if (!stbi_info(file.c_str(), &w, &h, &c)) problem = std::string("not a readable PNG/JPEG image: ") + stbi_failure_reason();
      else if (w > kMaxImageSide || h > kMaxImageSide)
        problem = std::to_string(w) + "x" + std::to_string(h) + " pixels; images of at most " + std::to_string(kMaxImageSide) +
                  "x" + std::to_string(kMaxImageSide) + " are read";
      else if (size_ == 0 && !files_.empty() && (w != w_ || h != h_))
        problem = std::to_string(w) + "x" + std::to_string(h) + ", but the first image ('" + files_[0] + "') is " +
                  std::to_string(w_) + "x" + std::to_string(h_) + " (--image-size S resizes them all)";
      if (!problem.empty()) {
        if (!options.skip_bad) throw InputError("'" + file + "': " + problem + " (--skip-bad skips such files)");
        if (skipped++ == 0) first_skipped = "'" + file + "': " + problem;
        continue;
      }
      if (files_.empty()) {
        w_ = size_ > 0 ? size_ : w, h_ = size_ > 0 ? size_ : h;
        c_ = options.image_mode == "rgb" ? 3 : options.image_mode == "grey" ? 1 : (c >= 3 ? 3 : 1);
      }
      files_.push_back(file);
      labels_.push_back(label);
    }
    if (skipped > 0)
      spdlog::warn("source '{}': skipped {} of {} files (--skip-bad); the first: {}", spec_, skipped, candidates.size(), first_skipped);
    if (files_.empty()) throw InputError("image folder '" + dir + "': no usable image (" + first_skipped + ")");
  }
  std::string spec() const override { return spec_; }
  int64_t size() const override { return files_.size(); }
  ItemKind kind() const override { return ItemKind::Image; }
  bool has_labels() const override { return folders_; }
  int64_t num_classes() const override { return static_cast<int64_t>(names_.size()); }
  std::vector<std::string> class_names() const override { return names_; }
  Batch get(const std::vector<int64_t>& indices) override {
    Batch b;
    b.index = indices;
    b.kind = ItemKind::Image;
    for (int64_t i : indices) check_index(i, size(), spec_);  // before allocating for them
    b.tensor = torch::empty({int64_t(indices.size()), c_, h_, w_});
    if (folders_) b.labels = torch::empty({int64_t(indices.size())}, torch::kInt64);
    for (size_t r = 0; r < indices.size(); ++r) {
      const std::string& file = files_[indices[r]];
      auto img = read_image(file, static_cast<int>(c_));
      if (size_ > 0) img = resize_and_crop(img, size_);
      if (img.size(1) != h_ || img.size(2) != w_)  // the file changed since the source opened
        throw InputError("'" + file + "' is " + std::to_string(img.size(2)) + "x" + std::to_string(img.size(1)) +
                         ", but the folder's images are " + std::to_string(w_) + "x" + std::to_string(h_));
      b.tensor[r].copy_(img);
      if (folders_) b.labels[r] = labels_[indices[r]];
    }
    return b;
  }

  // The shorter side to `size` (bilinear, antialiased as PIL's resize), then the centre
  // size x size crop: torchvision's Resize(size) + CenterCrop(size).
  static torch::Tensor resize_and_crop(const torch::Tensor& img, int64_t size) {
    const int64_t h = img.size(1), w = img.size(2);
    const double scale = static_cast<double>(size) / std::min(h, w);
    const int64_t nh = std::max<int64_t>(size, std::llround(h * scale)), nw = std::max<int64_t>(size, std::llround(w * scale));
    auto resized = (nh == h && nw == w) ? img
                                        : torch::nn::functional::interpolate(
                                              img.unsqueeze(0), torch::nn::functional::InterpolateFuncOptions()
                                                                    .size(std::vector<int64_t>{nh, nw})
                                                                    .mode(torch::kBilinear)
                                                                    .align_corners(false)
                                                                    .antialias(true))
                                              .squeeze(0)
                                              .clamp(-1, 1);
    return resized.narrow(1, (nh - size) / 2, size).narrow(2, (nw - size) / 2, size).contiguous();
  }

 private:
  std::string spec_;
  std::vector<std::string> files_;
  std::vector<int64_t> labels_;
  std::vector<std::string> names_;
  int64_t size_ = 0, w_ = 0, h_ = 0, c_ = 0;
  bool folders_ = false;
};

// ---------------------------------------------------------------- text:FILE, tsv:FILE
// Lines without their '\n' (and a '\r' before it); no item after a final '\n'.
std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t nl = text.find('\n', start);
    std::string line = text.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
    if (nl == std::string::npos) break;
    start = nl + 1;
  }
  return lines;
}

std::vector<std::string> split_tabs(const std::string& line) {
  std::vector<std::string> fields;
  size_t start = 0;
  for (size_t tab; (tab = line.find('\t', start)) != std::string::npos; start = tab + 1) fields.push_back(line.substr(start, tab - start));
  fields.push_back(line.substr(start));
  return fields;
}

// The texts at `indices` as a batch (an index past the end: InputError naming the source).
Batch text_batch(const std::vector<std::string>& texts, const std::vector<int64_t>& indices, const std::string& spec) {
  Batch b;
  b.index = indices;
  b.kind = ItemKind::Text;
  for (int64_t i : indices) {
    check_index(i, static_cast<int64_t>(texts.size()), spec);
    b.texts.push_back(texts[i]);
  }
  return b;
}

class TextFile : public Source {
 public:
  explicit TextFile(const std::string& path) : spec_("text:" + path), lines_(split_lines(read_text_file(path))) {}
  std::string spec() const override { return spec_; }
  int64_t size() const override { return lines_.size(); }
  ItemKind kind() const override { return ItemKind::Text; }
  Batch get(const std::vector<int64_t>& indices) override { return text_batch(lines_, indices, spec_); }

 private:
  std::string spec_;
  std::vector<std::string> lines_;
};

// Texts with a header naming the columns: `text` (required), `label` (optional, an integer >= 0)
// and numeric columns, which travel with each text as a vector (`identity` returns them): e.g.
// prompts with the class and the properties they ask for, to score the images made from them.
class TsvFile : public Source {
 public:
  explicit TsvFile(const std::string& path) : spec_("tsv:" + path) {
    auto lines = split_lines(read_text_file(path));
    if (lines.empty()) throw InputError("'" + path + "' is empty: a tsv source starts with a header naming its columns (text, label, ...)");
    auto header = split_tabs(lines[0]);
    int64_t text_col = -1, label_col = -1;
    for (size_t c = 0; c < header.size(); ++c) {
      const auto& name = header[c];
      if (name.empty()) throw InputError("'" + path + "' header: column " + std::to_string(c + 1) + " has no name");
      if (std::count(header.begin(), header.end(), name) > 1)
        throw InputError("'" + path + "' header: column '" + name + "' appears twice");
      if (name == "text") text_col = c;
      else if (name == "label") label_col = c;
      else numeric_.push_back(name);
    }
    if (text_col < 0) throw InputError("'" + path + "' header has no 'text' column (columns: " + lines[0] + ")");
    has_labels_ = label_col >= 0;
    const int64_t cols = numeric_.size();
    std::vector<float> values;
    std::vector<int64_t> labels;
    for (size_t r = 1; r < lines.size(); ++r) {
      auto fields = split_tabs(lines[r]);
      const std::string where = "'" + path + "' line " + std::to_string(r + 1);
      if (fields.size() != header.size())
        throw InputError(where + ": " + std::to_string(fields.size()) + " fields, the header names " + std::to_string(header.size()));
      texts_.push_back(fields[text_col]);
      for (size_t c = 0; c < header.size(); ++c) {
        if (int64_t(c) == text_col) continue;
        const std::string& f = fields[c];
        char* end = nullptr;
        if (int64_t(c) == label_col) {
          // strtoll saturates out of range; the bound also keeps v + 1 from overflowing.
          long long v = f.empty() ? -1 : std::strtoll(f.c_str(), &end, 10);
          if (f.empty() || *end != '\0' || v < 0 || v >= kMaxLabel)
            throw InputError(where + ", column 'label': '" + f + "' is not an integer class in [0, " + std::to_string(kMaxLabel) + ")");
          labels.push_back(v);
          num_classes_ = std::max<int64_t>(num_classes_, v + 1);
        } else {
          double v = f.empty() ? 0 : std::strtod(f.c_str(), &end);
          if (f.empty() || *end != '\0' || !std::isfinite(v))
            throw InputError(where + ", column '" + header[c] + "': '" + f + "' is not a finite number");
          // Finite as a double but not as a float (1e39): the cast would be undefined (or Inf).
          if (std::fabs(v) > std::numeric_limits<float>::max())
            throw InputError(where + ", column '" + header[c] + "': '" + f + "' is out of float range");
          values.push_back(static_cast<float>(v));
        }
      }
    }
    if (cols > 0) vectors_ = torch::tensor(values).reshape({int64_t(texts_.size()), cols});
    if (has_labels_) labels_ = torch::tensor(labels, torch::kLong);
  }
  std::string spec() const override { return spec_; }
  int64_t size() const override { return texts_.size(); }
  ItemKind kind() const override { return ItemKind::Text; }
  bool has_labels() const override { return has_labels_; }
  int64_t num_classes() const override { return num_classes_; }
  Batch get(const std::vector<int64_t>& indices) override {
    Batch b = text_batch(texts_, indices, spec_);
    auto idx = torch::tensor(indices, torch::kLong);
    if (has_labels_) b.labels = labels_.index_select(0, idx);
    if (vectors_.defined()) b.tensor = vectors_.index_select(0, idx);
    return b;
  }

 private:
  std::string spec_;
  std::vector<std::string> texts_, numeric_;
  torch::Tensor labels_;  // int64 [rows] when has_labels_
  bool has_labels_ = false;
  int64_t num_classes_ = 0;
  torch::Tensor vectors_;  // [rows, numeric columns]; undefined without numeric columns
};

// ---------------------------------------------------------------- h5:FILE:DATASET
class H5Rows : public Source {
 public:
  H5Rows(const std::string& file, const std::string& dataset)
      : spec_("h5:" + file + ":" + dataset), reader_(file, /*aligned=*/false), name_(dataset) {
    info_ = reader_.info(dataset);
    if (info_.is_integer && dataset != "label")
      spdlog::warn("source '{}': integer dataset read as float vectors", spec_);
    if (reader_.has("label") && dataset != "label" && reader_.info("label").rows == info_.rows) {
      labels_ = reader_.read_int64("label");
      for (size_t r = 0; r < labels_.size(); ++r) {
        if (labels_[r] < 0 || labels_[r] >= kMaxLabel)
          throw InputError("'" + file + "': /label of row " + std::to_string(r) + " is " + std::to_string(labels_[r]) +
                           "; labels are classes in [0, " + std::to_string(kMaxLabel) + ")");
        num_classes_ = std::max(num_classes_, labels_[r] + 1);
      }
      // A cache of net2net-extract records its source's class names (a non-string attribute: none).
      const nlohmann::json attributes = reader_.attributes();
      const auto it = attributes.find("class_names");
      nlohmann::json names = it != attributes.end() && it->is_string() ? nlohmann::json::parse(it->get<std::string>(), nullptr, false)
                                                                        : nlohmann::json();
      if (names.is_array())
        for (const auto& n : names)
          if (n.is_string()) class_names_.push_back(n.get<std::string>());
    }
  }
  std::vector<std::string> class_names() const override { return class_names_; }
  std::string spec() const override { return spec_; }
  int64_t size() const override { return info_.rows; }
  ItemKind kind() const override { return info_.item_shape.size() == 3 ? ItemKind::Image : ItemKind::Vector; }
  bool has_labels() const override { return !labels_.empty(); }
  int64_t num_classes() const override { return num_classes_; }
  Batch get(const std::vector<int64_t>& indices) override {
    for (int64_t i : indices) check_index(i, size(), spec_);
    Batch b;
    b.index = indices;
    b.kind = kind();
    auto rows = reader_.read_rows(name_, indices);
    io::require_finite_rows(rows.data(), int64_t(indices.size()), info_.cols, "source '" + spec_ + "'", &indices);
    std::vector<int64_t> shape = {int64_t(indices.size())};
    if (b.kind == ItemKind::Image) shape.insert(shape.end(), info_.item_shape.begin(), info_.item_shape.end());
    else shape.push_back(info_.cols);
    b.tensor = torch::from_blob(rows.data(), shape, torch::kFloat32).clone();
    if (!labels_.empty()) {
      b.labels = torch::empty({int64_t(indices.size())}, torch::kLong);
      for (size_t r = 0; r < indices.size(); ++r) b.labels[r] = labels_[indices[r]];
    }
    return b;
  }

 private:
  std::string spec_;
  io::EmbeddingReader reader_;
  std::string name_;
  io::DatasetInfo info_;
  std::vector<int64_t> labels_;
  int64_t num_classes_ = 0;
  std::vector<std::string> class_names_;
};

// ---------------------------------------------------------------- gaussian:N:DIM[:TRUNC]
class Gaussian : public Source {
 public:
  Gaussian(int64_t n, int64_t dim, double trunc, uint64_t seed, std::string spec)
      : spec_(std::move(spec)), n_(n), dim_(dim), trunc_(trunc), seed_(seed) {}
  std::string spec() const override { return spec_; }
  int64_t size() const override { return n_; }
  ItemKind kind() const override { return ItemKind::Vector; }
  Batch get(const std::vector<int64_t>& indices) override {
    Batch b;
    b.index = indices;
    b.kind = ItemKind::Vector;
    b.tensor = torch::empty({int64_t(indices.size()), dim_});
    float* t = b.tensor.data_ptr<float>();
    for (size_t r = 0; r < indices.size(); ++r) {
      check_index(indices[r], n_, spec_);
      // Each item from its own stream: the same code for item i in every batch, shard and resume.
      std::mt19937_64 rng(seed_ * 0x9E3779B97F4A7C15ULL ^ (uint64_t(indices[r]) + 0x632BE59BD9B4E019ULL));
      for (int64_t k = 0; k < dim_; ++k) t[r * dim_ + k] = static_cast<float>(draw(rng));
    }
    return b;
  }

 private:
  // Box-Muller on mt19937_64 (portable, unlike std::normal_distribution); resampled beyond trunc.
  double draw(std::mt19937_64& rng) const {
    while (true) {
      double u1 = (double(rng() >> 11) + 0.5) * (1.0 / 9007199254740992.0);
      double u2 = double(rng() >> 11) * (1.0 / 9007199254740992.0);
      double x = std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
      if (trunc_ <= 0 || std::fabs(x) <= trunc_) return x;
    }
  }
  std::string spec_;
  int64_t n_, dim_;
  double trunc_;
  uint64_t seed_;
};

int64_t parse_int(const std::string& s, const std::string& what, const std::string& spec) {
  try {
    size_t used = 0;
    long long v = std::stoll(s, &used);
    if (used == s.size()) return v;
  } catch (...) {
  }
  throw UsageError("source '" + spec + "': " + what + " must be an integer, got '" + s + "'");
}

// ---------------------------------------------------------------- the schemes' factories
std::unique_ptr<Source> open_fashion_mnist(const std::string& split, const std::string& spec, const SourceOptions& options) {
  if (split != "train" && split != "test")
    throw UsageError("source '" + spec + "': use fashion-mnist:train or fashion-mnist:test");
  return std::make_unique<FashionMnist>(split, options.data_dir.empty() ? default_fashion_mnist_dir() : options.data_dir);
}

std::unique_ptr<Source> open_h5(const std::string& rest, const std::string& spec, const SourceOptions&) {
  auto last = rest.rfind(':');
  if (last == std::string::npos || last == 0 || last + 1 == rest.size())
    throw UsageError("source '" + spec + "': use h5:FILE:DATASET");
  return std::make_unique<H5Rows>(rest.substr(0, last), rest.substr(last + 1));
}

std::unique_ptr<Source> open_gaussian(const std::string& rest, const std::string& spec, const SourceOptions& options) {
  std::vector<std::string> parts;
  size_t s = 0;
  while (true) {
    auto c = rest.find(':', s);
    parts.push_back(rest.substr(s, c == std::string::npos ? std::string::npos : c - s));
    if (c == std::string::npos) break;
    s = c + 1;
  }
  if (parts.size() < 2 || parts.size() > 3) throw UsageError("source '" + spec + "': use gaussian:N:DIM[:TRUNC]");
  int64_t n = parse_int(parts[0], "N", spec), dim = parse_int(parts[1], "DIM", spec);
  if (n < 0 || dim < 1) throw UsageError("source '" + spec + "': N must be >= 0 and DIM >= 1");
  double trunc = 0;
  if (parts.size() == 3) {
    try {
      trunc = std::stod(parts[2]);
    } catch (...) {
      throw UsageError("source '" + spec + "': TRUNC must be a number");
    }
    if (!(trunc > 0)) throw UsageError("source '" + spec + "': TRUNC must be > 0");
  }
  return std::make_unique<Gaussian>(n, dim, trunc, options.seed, spec);
}

}  // namespace

const std::vector<SourceScheme>& source_schemes() {
  using Options = const SourceOptions&;
  static const std::vector<SourceScheme> schemes = {
      {"fashion-mnist", "fashion-mnist:train|test",
       "Fashion-MNIST images [1,28,28] + labels (Debian's files, or --data-dir)", open_fashion_mnist},
      {"images", "images:DIR", "PNG/JPEG files, sorted by name (one size, or --image-size)",
       [](const std::string& dir, const std::string&, Options o) -> std::unique_ptr<Source> {
         return std::make_unique<ImageDir>(dir, o, /*folders=*/false);
       }},
      {"imagefolder", "imagefolder:DIR", "DIR/CLASS/*.png|jpg: labels and class names from the sub-folders (torchvision's ImageFolder)",
       [](const std::string& dir, const std::string&, Options o) -> std::unique_ptr<Source> {
         return std::make_unique<ImageDir>(dir, o, /*folders=*/true);
       }},
      {"text", "text:FILE", "texts, one per line",
       [](const std::string& file, const std::string&, Options) -> std::unique_ptr<Source> { return std::make_unique<TextFile>(file); }},
      {"tsv", "tsv:FILE", "texts under a header: text, optional label, numeric columns",
       [](const std::string& file, const std::string&, Options) -> std::unique_ptr<Source> { return std::make_unique<TsvFile>(file); }},
      {"h5", "h5:FILE:DATASET", "rows of an HDF5 dataset (+ its file's /label when present)", open_h5},
      {"gaussian", "gaussian:N:DIM[:TRUNC]", "N seeded standard normal vectors of DIM, truncated to |x| <= TRUNC", open_gaussian},
  };
  return schemes;
}

std::string source_usages() {
  std::string out;
  for (const auto& s : source_schemes()) out += (out.empty() ? "" : ", ") + s.usage;
  return out;
}

std::unique_ptr<Source> open_source(const std::string& spec, const SourceOptions& options) {
  auto colon = spec.find(':');
  const std::string name = spec.substr(0, colon);
  const std::string argument = colon == std::string::npos ? "" : spec.substr(colon + 1);
  for (const auto& scheme : source_schemes()) {
    if (scheme.name != name) continue;
    if (argument.empty()) throw UsageError("source '" + spec + "': use " + scheme.usage);
    return scheme.open(argument, spec, options);
  }
  throw UsageError("unknown source '" + spec + "'; sources: " + source_usages());
}

torch::Tensor read_image(const std::string& path, int channels) {
  int w, h, c;
  if (!stbi_info(path.c_str(), &w, &h, &c))
    throw InputError("'" + path + "' is not a readable PNG/JPEG image: " + stbi_failure_reason());
  if (w > kMaxImageSide || h > kMaxImageSide)  // checked before stbi_load allocates the pixels
    throw InputError("'" + path + "' is " + std::to_string(w) + "x" + std::to_string(h) + " pixels; images of at most " +
                     std::to_string(kMaxImageSide) + "x" + std::to_string(kMaxImageSide) + " are read");
  int want = channels > 0 ? channels : (c >= 3 ? 3 : 1);
  unsigned char* px = stbi_load(path.c_str(), &w, &h, &c, want);
  if (!px) throw InputError("cannot decode '" + path + "': " + stbi_failure_reason());
  auto hwc = torch::from_blob(px, {h, w, want}, torch::kUInt8).to(torch::kFloat32);
  stbi_image_free(px);
  return (hwc.permute({2, 0, 1}).contiguous() / 127.5 - 1.0);
}

void write_png(const std::string& path, const torch::Tensor& image) {
  TORCH_CHECK(image.dim() == 3 && (image.size(0) == 1 || image.size(0) == 3), "write_png: expected [1|3, H, W]");
  auto hwc = ((image.detach().to(torch::kFloat32).cpu().clamp(-1, 1) + 1.0) * 127.5)
                 .round()
                 .to(torch::kUInt8)
                 .permute({1, 2, 0})
                 .contiguous();
  int h = hwc.size(0), w = hwc.size(1), c = hwc.size(2);
  write_atomically(path, [&](const std::string& tmp) {
    if (!stbi_write_png(tmp.c_str(), w, h, c, hwc.data_ptr<uint8_t>(), w * c))
      throw IoError("cannot write PNG '" + tmp + "'");
  });
}

}  // namespace net2net::data
