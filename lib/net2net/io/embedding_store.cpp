#include "net2net/io/embedding_store.h"

#include <H5Cpp.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <new>
#include <string>

#include "net2net/core/atomic_file.h"
#include "net2net/core/error.h"

namespace net2net::io {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {
std::string strip_slash(const std::string& name) { return !name.empty() && name[0] == '/' ? name.substr(1) : name; }

// What a file may declare is bounded before anything is allocated from it: HDF5 allows huge,
// sparsely allocated datasets. 2^40 values (4 TiB of float32) is beyond any cache this tool reads.
constexpr int64_t kMaxValues = int64_t(1) << 40;
constexpr int kMaxRank = H5S_MAX_RANK;  // 32
// Fixed-length string attributes are allocated at their declared size before they are read.
constexpr size_t kMaxStringAttribute = size_t(1) << 20;

// a * b for a, b >= 0 when it is at most kMaxValues (no overflow); -1 otherwise.
int64_t bounded_product(int64_t a, int64_t b) {
  int64_t p = 0;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &p) || p > kMaxValues) return -1;
  return p;
}

template <class T>
std::string shape_text(const std::vector<T>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

// A zeroed buffer for rows x cols values read from `what`: InputError (not overflow or
// std::bad_alloc) when that is more than can be read.
template <class T>
std::vector<T> buffer_for(int64_t rows, int64_t cols, const std::string& what) {
  const int64_t n = bounded_product(rows, cols);
  if (n < 0)
    throw InputError(what + ": " + std::to_string(rows) + " rows of " + std::to_string(cols) +
                     " values are more than 2^40 values, beyond what this tool reads");
  try {
    return std::vector<T>(static_cast<size_t>(n));
  } catch (const std::bad_alloc&) {
    throw InputError(what + ": cannot allocate memory for " + std::to_string(n) + " values (" + std::to_string(rows) + " rows)");
  }
}

std::vector<hsize_t> dims_of(const H5::DataSet& ds) {
  H5::DataSpace space = ds.getSpace();
  int rank = space.getSimpleExtentNdims();
  std::vector<hsize_t> dims(rank);
  if (rank > 0) space.getSimpleExtentDims(dims.data());
  return dims;
}

// The dataset attribute "shape" (the dimensions of one row), empty when absent. Checked against
// cols by info(): the h5 source shapes rows with it.
std::vector<int64_t> read_shape_attribute(const H5::DataSet& ds, const std::string& what) {
  if (!ds.attrExists("shape")) return {};
  H5::Attribute a = ds.openAttribute("shape");
  H5::DataSpace sp = a.getSpace();
  hssize_t n = sp.getSimpleExtentNpoints();
  if (a.getTypeClass() != H5T_INTEGER || n < 0 || n > kMaxRank)
    throw InputError(what + ": attribute 'shape' must hold at most " + std::to_string(kMaxRank) +
                     " integers (the dimensions of one row)");
  std::vector<int64_t> shape(static_cast<size_t>(n));
  if (n > 0) a.read(H5::PredType::NATIVE_INT64, shape.data());
  return shape;
}
}  // namespace

// ---------------------------------------------------------------- reader
struct EmbeddingReader::Impl {
  H5::H5File file;
};

EmbeddingReader::~EmbeddingReader() = default;
EmbeddingReader::EmbeddingReader(EmbeddingReader&&) noexcept = default;

EmbeddingReader::EmbeddingReader(const std::string& path, bool aligned) : impl_(std::make_unique<Impl>()), path_(path) {
  H5::Exception::dontPrint();
  std::error_code ec;
  if (!fs::exists(path, ec)) throw IoError("embedding cache '" + path + "' does not exist");
  try {
    impl_->file.openFile(path, H5F_ACC_RDONLY);
  } catch (const H5::Exception&) {
    throw IoError("cannot open '" + path + "' as an HDF5 file (not HDF5, truncated, or unreadable)");
  }
  json attrs = attributes();
  // Compared by type: get<int64_t>() of a float attribute (1e300, say) would be an undefined cast.
  const json complete = attrs.contains("complete") ? attrs["complete"] : json();
  if ((complete.is_number_integer() && complete.get<int64_t>() == 0) || (complete.is_number_float() && complete.get<double>() == 0.0))
    throw InputError("embedding cache '" + path + "' is marked incomplete (an interrupted write)");
  if (attrs.contains("version") && attrs["version"].is_number_integer() && attrs["version"].get<int64_t>() > kEmbeddingVersion)
    throw InputError("embedding cache '" + path + "' has format version " + attrs["version"].dump() +
                     "; this tool reads up to " + std::to_string(kEmbeddingVersion));
  // Every dataset at the root holds one row per item: they must agree.
  if (!aligned) return;
  std::string first;
  for (const auto& name : datasets()) {
    auto d = info(name);
    if (first.empty()) {
      first = name;
      rows_ = d.rows;
    } else if (d.rows != rows_) {
      throw InputError("embedding cache '" + path + "': dataset '/" + name + "' has " + std::to_string(d.rows) +
                       " rows but '/" + first + "' has " + std::to_string(rows_) + " (rows must be aligned)");
    }
  }
}

// Malformed files make HDF5 throw anywhere while the structure is read: InputError naming the file.
std::vector<std::string> EmbeddingReader::datasets() const {
  std::vector<std::string> names;
  try {
    hsize_t n = impl_->file.getNumObjs();
    for (hsize_t i = 0; i < n; ++i) {
      std::string name = impl_->file.getObjnameByIdx(i);
      if (impl_->file.childObjType(name) == H5O_TYPE_DATASET) names.push_back(name);
    }
  } catch (const H5::Exception& e) {
    throw InputError("embedding cache '" + path_ + "': cannot list its datasets (a damaged HDF5 file?): " + e.getDetailMsg());
  }
  return names;
}

bool EmbeddingReader::has(const std::string& name) const {
  std::string n = strip_slash(name);
  if (n.empty()) return false;
  try {
    return impl_->file.nameExists(n) && impl_->file.childObjType(n) == H5O_TYPE_DATASET;
  } catch (const H5::Exception&) {
    return false;  // a name HDF5 cannot resolve ("a/b" where /a is no group) names no dataset
  }
}

DatasetInfo EmbeddingReader::info(const std::string& name) const {
  std::string n = strip_slash(name);
  if (!has(n)) {
    std::string all;
    for (const auto& d : datasets()) all += (all.empty() ? "" : ", ") + ("/" + d);
    throw InputError("embedding cache '" + path_ + "' has no dataset '/" + n + "' (it has: " +
                     (all.empty() ? "none" : all) + ")");
  }
  const std::string what = "embedding cache '" + path_ + "': dataset '/" + n + "'";
  try {
    H5::DataSet ds = impl_->file.openDataSet(n);
    // Rank 0 (a scalar) has no row dimension for read_rows to select.
    const int rank = ds.getSpace().getSimpleExtentNdims();
    if (rank < 1 || rank > kMaxRank)
      throw InputError(what + " has " + std::to_string(rank) + " dimensions; it must be [rows] or [rows, ...] (at most " +
                       std::to_string(kMaxRank) + ")");
    auto dims = dims_of(ds);
    DatasetInfo d;
    d.name = n;
    // Overflow-safe and bounded: rows * cols values are allocated when the dataset is read.
    d.rows = dims[0] <= uint64_t(kMaxValues) ? static_cast<int64_t>(dims[0]) : -1;
    d.cols = 1;
    for (size_t i = 1; i < dims.size(); ++i) d.cols = dims[i] <= uint64_t(kMaxValues) ? bounded_product(d.cols, int64_t(dims[i])) : -1;
    if (d.rows < 0 || d.cols < 0 || bounded_product(d.rows, d.cols) < 0)
      throw InputError(what + " is " + shape_text(dims) + ": more than 2^40 values, beyond what this tool reads");
    d.item_shape = read_shape_attribute(ds, what);
    if (d.item_shape.empty()) {
      for (size_t i = 1; i < dims.size(); ++i) d.item_shape.push_back(static_cast<int64_t>(dims[i]));
      if (d.item_shape.empty()) d.item_shape.push_back(1);
    } else {
      int64_t product = 1;
      for (int64_t s : d.item_shape) product = s > 0 ? bounded_product(product, s) : -1;
      if (product != d.cols)
        throw InputError(what + ": attribute 'shape' " + shape_text(d.item_shape) + " does not multiply to the " +
                         std::to_string(d.cols) + " values of a row (its entries must be > 0)");
    }
    d.is_integer = ds.getTypeClass() == H5T_INTEGER;
    return d;
  } catch (const H5::Exception& e) {
    throw InputError(what + ": cannot read its shape or type (a damaged HDF5 file?): " + e.getDetailMsg());
  }
}

std::vector<float> EmbeddingReader::read_rows(const std::string& name, int64_t start, int64_t count) const {
  auto d = info(name);
  if (start < 0 || count < 0 || start > d.rows - count)  // not start + count: that can overflow
    throw InputError("embedding cache '" + path_ + "': " + std::to_string(count) + " rows from row " + std::to_string(start) +
                     " of '/" + d.name + "' are out of range (it has " + std::to_string(d.rows) + ")");
  auto out = buffer_for<float>(count, d.cols, "embedding cache '" + path_ + "': dataset '/" + d.name + "'");
  if (count == 0) return out;
  try {
    H5::DataSet ds = impl_->file.openDataSet(d.name);
    auto dims = dims_of(ds);
    H5::DataSpace file_space = ds.getSpace();
    std::vector<hsize_t> offset(dims.size(), 0), extent = dims;
    offset[0] = static_cast<hsize_t>(start);
    extent[0] = static_cast<hsize_t>(count);
    file_space.selectHyperslab(H5S_SELECT_SET, extent.data(), offset.data());
    H5::DataSpace mem_space(static_cast<int>(extent.size()), extent.data());
    ds.read(out.data(), H5::PredType::NATIVE_FLOAT, mem_space, file_space);
  } catch (const H5::Exception& e) {
    throw IoError("cannot read '/" + d.name + "' from '" + path_ + "': " + e.getDetailMsg());
  }
  return out;
}

std::vector<float> EmbeddingReader::read_rows(const std::string& name, const std::vector<int64_t>& indices) const {
  auto d = info(name);
  // Checked up front: the runs below compute index + 1 and last - first + 1.
  for (size_t k = 0; k < indices.size(); ++k)
    if (indices[k] < 0 || indices[k] >= d.rows)
      throw InputError("embedding cache '" + path_ + "': row " + std::to_string(indices[k]) + " of '/" + d.name +
                       "' is out of range (it has " + std::to_string(d.rows) + ")");
  auto out = buffer_for<float>(static_cast<int64_t>(indices.size()), d.cols, "embedding cache '" + path_ + "': dataset '/" + d.name + "'");
  // Sort the requests, read each contiguous run once, scatter back to the requested order.
  std::vector<size_t> order(indices.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return indices[a] < indices[b]; });
  size_t i = 0;
  while (i < order.size()) {
    int64_t first = indices[order[i]];
    size_t j = i;
    while (j + 1 < order.size() && indices[order[j + 1]] <= indices[order[j]] + 1) ++j;
    int64_t last = indices[order[j]];
    auto block = read_rows(d.name, first, last - first + 1);
    for (size_t k = i; k <= j; ++k) {
      int64_t r = indices[order[k]] - first;
      std::copy_n(block.begin() + r * d.cols, d.cols, out.begin() + order[k] * d.cols);
    }
    i = j + 1;
  }
  return out;
}

std::vector<int64_t> EmbeddingReader::read_int64(const std::string& name) const {
  auto d = info(name);
  auto out = buffer_for<int64_t>(d.rows, d.cols, "embedding cache '" + path_ + "': dataset '/" + d.name + "'");
  if (out.empty()) return out;
  try {
    H5::DataSet ds = impl_->file.openDataSet(d.name);
    ds.read(out.data(), H5::PredType::NATIVE_INT64);
  } catch (const H5::Exception& e) {
    throw IoError("cannot read '/" + d.name + "' from '" + path_ + "' as integers: " + e.getDetailMsg());
  }
  return out;
}

json EmbeddingReader::attributes() const {
  json out = json::object();
  int n = 0;
  try {
    n = impl_->file.getNumAttrs();
  } catch (const H5::Exception& e) {
    throw InputError("embedding cache '" + path_ + "': cannot list its attributes (a damaged HDF5 file?): " + e.getDetailMsg());
  }
  for (int i = 0; i < n; ++i) {
    try {
      H5::Attribute a = impl_->file.openAttribute(static_cast<unsigned>(i));
      std::string key = a.getName();
      H5T_class_t cls = a.getTypeClass();
      if (a.getSpace().getSimpleExtentNpoints() != 1) continue;
      if (cls == H5T_STRING) {
        H5::StrType type = a.getStrType();
        if (!type.isVariableStr() && type.getSize() > kMaxStringAttribute) continue;  // allocated before it is read
        std::string s;
        a.read(type, s);
        out[key] = s.c_str();  // fixed-length strings may carry trailing NULs
      } else if (cls == H5T_INTEGER) {
        int64_t v = 0;
        a.read(H5::PredType::NATIVE_INT64, &v);
        out[key] = v;
      } else if (cls == H5T_FLOAT) {
        double v = 0;
        a.read(H5::PredType::NATIVE_DOUBLE, &v);
        out[key] = v;
      }
    } catch (const H5::Exception&) {
      // An attribute of a type we do not read is not an error: attributes are provenance.
    }
  }
  return out;
}

// ---------------------------------------------------------------- writer
struct EmbeddingWriter::Impl {
  H5::H5File file;
  WriterOptions options;
  std::string path;
  std::map<std::string, H5::DataSet> sets;
  std::map<std::string, int64_t> cols;
};

EmbeddingWriter::EmbeddingWriter(const std::string& path, WriterOptions options) : impl_(std::make_unique<Impl>()) {
  H5::Exception::dontPrint();
  impl_->options = options;
  impl_->path = path;
  try {
    impl_->file = H5::H5File(path, H5F_ACC_TRUNC);
  } catch (const H5::Exception& e) {
    throw IoError("cannot create HDF5 file '" + path + "': " + e.getDetailMsg());
  }
  set_attribute("complete", 0);
}

EmbeddingWriter::~EmbeddingWriter() = default;

void EmbeddingWriter::create_float(const std::string& name, int64_t cols, const std::vector<int64_t>& item_shape) {
  if (cols <= 0) throw InputError("dataset '/" + name + "' needs at least one column");
  try {
    // Chunks of at most ~4 MiB.
    int64_t rows = std::clamp<int64_t>((4 << 20) / (cols * 4), 1, std::max<int64_t>(1, impl_->options.chunk_rows));
    hsize_t dims[2] = {0, static_cast<hsize_t>(cols)}, max[2] = {H5S_UNLIMITED, static_cast<hsize_t>(cols)};
    hsize_t chunk[2] = {static_cast<hsize_t>(rows), static_cast<hsize_t>(cols)};
    H5::DSetCreatPropList plist;
    plist.setChunk(2, chunk);
    if (impl_->options.compression > 0) plist.setDeflate(impl_->options.compression);
    H5::DataSpace space(2, dims, max);
    auto ds = impl_->file.createDataSet(name, H5::PredType::IEEE_F32LE, space, plist);
    if (item_shape.size() > 1) {
      hsize_t n = item_shape.size();
      H5::DataSpace sp(1, &n);
      auto a = ds.createAttribute("shape", H5::PredType::STD_I64LE, sp);
      a.write(H5::PredType::NATIVE_INT64, item_shape.data());
    }
    impl_->sets[name] = ds;
    impl_->cols[name] = cols;
  } catch (const H5::Exception& e) {
    throw IoError("cannot create dataset '/" + name + "' in '" + impl_->path + "': " + e.getDetailMsg());
  }
}

void EmbeddingWriter::create_int64(const std::string& name) {
  try {
    hsize_t dims[1] = {0}, max[1] = {H5S_UNLIMITED}, chunk[1] = {static_cast<hsize_t>(std::max<int64_t>(1, impl_->options.chunk_rows * 16))};
    H5::DSetCreatPropList plist;
    plist.setChunk(1, chunk);
    if (impl_->options.compression > 0) plist.setDeflate(impl_->options.compression);
    H5::DataSpace space(1, dims, max);
    impl_->sets[name] = impl_->file.createDataSet(name, H5::PredType::STD_I64LE, space, plist);
    impl_->cols[name] = 0;
  } catch (const H5::Exception& e) {
    throw IoError("cannot create dataset '/" + name + "' in '" + impl_->path + "': " + e.getDetailMsg());
  }
}

namespace {
void append(H5::DataSet& ds, const void* data, const H5::PredType& mem_type, int64_t rows, int64_t cols) {
  if (rows == 0) return;
  int rank = cols > 0 ? 2 : 1;
  auto dims = dims_of(ds);
  std::vector<hsize_t> grown = dims;
  grown[0] += static_cast<hsize_t>(rows);
  ds.extend(grown.data());
  H5::DataSpace file_space = ds.getSpace();
  std::vector<hsize_t> offset(rank, 0), extent(rank);
  offset[0] = dims[0];
  extent[0] = static_cast<hsize_t>(rows);
  if (rank == 2) extent[1] = static_cast<hsize_t>(cols);
  file_space.selectHyperslab(H5S_SELECT_SET, extent.data(), offset.data());
  H5::DataSpace mem_space(rank, extent.data());
  ds.write(data, mem_type, mem_space, file_space);
}
}  // namespace

void EmbeddingWriter::append_float(const std::string& name, const float* data, int64_t rows) {
  try {
    append(impl_->sets.at(name), data, H5::PredType::NATIVE_FLOAT, rows, impl_->cols.at(name));
  } catch (const H5::Exception& e) {
    throw IoError("cannot append to '/" + name + "' in '" + impl_->path + "': " + e.getDetailMsg());
  }
}

void EmbeddingWriter::append_int64(const std::string& name, const int64_t* data, int64_t rows) {
  try {
    append(impl_->sets.at(name), data, H5::PredType::NATIVE_INT64, rows, 0);
  } catch (const H5::Exception& e) {
    throw IoError("cannot append to '/" + name + "' in '" + impl_->path + "': " + e.getDetailMsg());
  }
}

void EmbeddingWriter::set_attribute(const std::string& key, const json& value) {
  try {
    auto& f = impl_->file;
    if (f.attrExists(key)) f.removeAttr(key);
    H5::DataSpace scalar(H5S_SCALAR);
    if (value.is_number_integer() || value.is_boolean()) {
      int64_t v = value.is_boolean() ? value.get<bool>() : value.get<int64_t>();
      f.createAttribute(key, H5::PredType::STD_I64LE, scalar).write(H5::PredType::NATIVE_INT64, &v);
    } else if (value.is_number_float()) {
      double v = value.get<double>();
      f.createAttribute(key, H5::PredType::IEEE_F64LE, scalar).write(H5::PredType::NATIVE_DOUBLE, &v);
    } else {
      // Variable-length UTF-8, as h5py writes Python strings.
      H5::StrType type(H5::PredType::C_S1, H5T_VARIABLE);
      type.setCset(H5T_CSET_UTF8);
      std::string text = value.is_string() ? value.get<std::string>() : value.dump();
      f.createAttribute(key, type, scalar).write(type, text);
    }
  } catch (const H5::Exception& e) {
    throw IoError("cannot write attribute '" + key + "' in '" + impl_->path + "': " + e.getDetailMsg());
  }
}

void EmbeddingWriter::finish() {
  set_attribute("format", kEmbeddingFormat);
  set_attribute("version", kEmbeddingVersion);
  set_attribute("complete", 1);  // last: a file without it is not finished
  try {
    impl_->file.flush(H5F_SCOPE_GLOBAL);
    impl_->sets.clear();
    impl_->file.close();
  } catch (const H5::Exception& e) {
    throw IoError("cannot finish '" + impl_->path + "': " + e.getDetailMsg());
  }
}

void write_store(const std::string& path, WriterOptions options, const std::function<void(EmbeddingWriter&)>& fill) {
  write_atomically(path, [&](const std::string& tmp) {
    EmbeddingWriter writer(tmp, options);
    fill(writer);
    writer.finish();
  });
}

void require_finite_rows(const float* values, int64_t rows, int64_t cols, const std::string& what,
                         const std::vector<int64_t>* row_ids) {
  constexpr size_t kNamed = 5;
  std::vector<int64_t> bad;
  int64_t count = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = values + r * cols;
    bool finite = true;
    for (int64_t c = 0; c < cols; ++c) finite &= std::isfinite(row[c]);  // branch-free: vectorises
    if (finite) continue;
    ++count;
    if (bad.size() < kNamed) bad.push_back(row_ids ? (*row_ids)[static_cast<size_t>(r)] : r);
  }
  if (count == 0) return;
  std::string list;
  for (size_t i = 0; i < bad.size(); ++i) list += (i ? ", " : "") + std::to_string(bad[i]);
  throw InputError(what + ": " + std::to_string(count) + (count == 1 ? " row holds" : " rows hold") +
                   " NaN or Inf (row" + (bad.size() == 1 ? " " : "s ") + list + (count > int64_t(bad.size()) ? ", ..." : "") +
                   "; rows count from 0); fix or drop them");
}

}  // namespace net2net::io
