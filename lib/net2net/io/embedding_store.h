// The embedding cache (docs/formats.md): an HDF5 file with one 2-D float32 dataset per expert,
// rows aligned across datasets, optional /label and /index (int64 [N]), and provenance as root
// attributes. Any HDF5 writer that follows the format (h5py, say) makes a readable cache;
// attributes are optional. This is the project's own small I/O layer over the HDF5 C++ API;
// it does not include torch.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace net2net::io {

inline constexpr const char* kEmbeddingFormat = "net2net.embeddings";
inline constexpr int64_t kEmbeddingVersion = 1;

struct DatasetInfo {
  std::string name;
  int64_t rows = 0;
  int64_t cols = 0;                 // product of the non-row dimensions
  std::vector<int64_t> item_shape;  // e.g. [1, 28, 28] for flattened images (attribute "shape"), else [cols]
  bool is_integer = false;
};

class EmbeddingReader {
 public:
  // IoError when the file cannot be opened; InputError when it is not a usable cache (rows not
  // aligned, marked incomplete, a newer version).
  // aligned = false reads one dataset of any HDF5 file (e.g. the h5:FILE:DATASET source); rows()
  // is then 0.
  explicit EmbeddingReader(const std::string& path, bool aligned = true);
  ~EmbeddingReader();
  EmbeddingReader(EmbeddingReader&&) noexcept;

  const std::string& path() const { return path_; }
  int64_t rows() const { return rows_; }
  // Names of all datasets at the root (without a leading '/').
  std::vector<std::string> datasets() const;
  bool has(const std::string& name) const;
  // InputError naming the file and the dataset when it is missing.
  DatasetInfo info(const std::string& name) const;

  // Rows [start, start + count) of a dataset as float32, row-major.
  std::vector<float> read_rows(const std::string& name, int64_t start, int64_t count) const;
  // Arbitrary rows (any order, repeats allowed): contiguous runs are read as one hyperslab.
  std::vector<float> read_rows(const std::string& name, const std::vector<int64_t>& indices) const;
  // A whole integer dataset (e.g. /label, /index) as int64.
  std::vector<int64_t> read_int64(const std::string& name) const;
  // Root attributes: strings, integers and floats (strings holding JSON stay strings).
  nlohmann::json attributes() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string path_;
  int64_t rows_ = 0;
};

struct WriterOptions {
  int64_t chunk_rows = 1024;  // rows per HDF5 chunk
  int compression = 0;        // gzip level 0-9 (0: none)
};

// Writes a cache front to back. Use write_store() to get the atomic rename.
class EmbeddingWriter {
 public:
  EmbeddingWriter(const std::string& path, WriterOptions options);
  ~EmbeddingWriter();
  // A float32 dataset [0, cols], growing by append; item_shape (product == cols) is stored as
  // the dataset attribute "shape" when it has more than one dimension.
  void create_float(const std::string& name, int64_t cols, const std::vector<int64_t>& item_shape = {});
  void create_int64(const std::string& name);
  void append_float(const std::string& name, const float* data, int64_t rows);
  void append_int64(const std::string& name, const int64_t* data, int64_t rows);
  // Root attribute: strings, integers and floats as such; other JSON values as their JSON text.
  void set_attribute(const std::string& key, const nlohmann::json& value);
  // Records format/version, then complete = 1 last, and flushes.
  void finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Refuses rows holding NaN or Inf: InputError naming `what` (e.g. "cache 'f.h5' dataset 'z'"), how
// many rows, and the first few (row numbers are row_ids[i] when given, else i). One pass; NaN and Inf
// in data are named up front instead of surfacing as a skipped step or a LAPACK failure later.
void require_finite_rows(const float* values, int64_t rows, int64_t cols, const std::string& what,
                         const std::vector<int64_t>* row_ids = nullptr);

// Creates `path` atomically: fill() writes into a temporary file, finish() is called, and only
// then the file is renamed to `path`.
void write_store(const std::string& path, WriterOptions options, const std::function<void(EmbeddingWriter&)>& fill);

}  // namespace net2net::io
