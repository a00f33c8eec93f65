#include "net2net/io/embedding_store.h"

#include <H5Cpp.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>

#include "net2net/core/atomic_file.h"
#include "net2net/core/error.h"

namespace net2net::io {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {
std::string strip_slash(const std::string& name) { return !name.empty() && name[0] == '/' ? name.substr(1) : name; }

std::vector<hsize_t> dims_of(const H5::DataSet& ds) {
  H5::DataSpace space = ds.getSpace();
  int rank = space.getSimpleExtentNdims();
  std::vector<hsize_t> dims(rank);
  if (rank > 0) space.getSimpleExtentDims(dims.data());
  return dims;
}

std::vector<int64_t> read_shape_attribute(const H5::DataSet& ds) {
  if (!ds.attrExists("shape")) return {};
  H5::Attribute a = ds.openAttribute("shape");
  H5::DataSpace sp = a.getSpace();
  hssize_t n = sp.getSimpleExtentNpoints();
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
  if (attrs.contains("complete") && attrs["complete"].is_number() && attrs["complete"].get<int64_t>() == 0)
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

std::vector<std::string> EmbeddingReader::datasets() const {
  std::vector<std::string> names;
  hsize_t n = impl_->file.getNumObjs();
  for (hsize_t i = 0; i < n; ++i) {
    std::string name = impl_->file.getObjnameByIdx(i);
    if (impl_->file.childObjType(name) == H5O_TYPE_DATASET) names.push_back(name);
  }
  return names;
}

bool EmbeddingReader::has(const std::string& name) const {
  std::string n = strip_slash(name);
  return !n.empty() && impl_->file.nameExists(n) && impl_->file.childObjType(n) == H5O_TYPE_DATASET;
}

DatasetInfo EmbeddingReader::info(const std::string& name) const {
  std::string n = strip_slash(name);
  if (!has(n)) {
    std::string all;
    for (const auto& d : datasets()) all += (all.empty() ? "" : ", ") + ("/" + d);
    throw InputError("embedding cache '" + path_ + "' has no dataset '/" + n + "' (it has: " +
                     (all.empty() ? "none" : all) + ")");
  }
  H5::DataSet ds = impl_->file.openDataSet(n);
  auto dims = dims_of(ds);
  DatasetInfo d;
  d.name = n;
  d.rows = dims.empty() ? 1 : static_cast<int64_t>(dims[0]);
  d.cols = 1;
  for (size_t i = 1; i < dims.size(); ++i) d.cols *= static_cast<int64_t>(dims[i]);
  d.item_shape = read_shape_attribute(ds);
  if (d.item_shape.empty()) {
    for (size_t i = 1; i < dims.size(); ++i) d.item_shape.push_back(static_cast<int64_t>(dims[i]));
    if (d.item_shape.empty()) d.item_shape.push_back(1);
  }
  d.is_integer = ds.getTypeClass() == H5T_INTEGER;
  return d;
}

std::vector<float> EmbeddingReader::read_rows(const std::string& name, int64_t start, int64_t count) const {
  auto d = info(name);
  if (start < 0 || count < 0 || start + count > d.rows)
    throw InputError("embedding cache '" + path_ + "': rows [" + std::to_string(start) + ", " +
                     std::to_string(start + count) + ") of '/" + d.name + "' are out of range (it has " +
                     std::to_string(d.rows) + ")");
  std::vector<float> out(static_cast<size_t>(count * d.cols));
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
  std::vector<float> out(indices.size() * static_cast<size_t>(d.cols));
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
  std::vector<int64_t> out(static_cast<size_t>(d.rows * d.cols));
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
  int n = impl_->file.getNumAttrs();
  for (int i = 0; i < n; ++i) {
    try {
      H5::Attribute a = impl_->file.openAttribute(static_cast<unsigned>(i));
      std::string key = a.getName();
      H5T_class_t cls = a.getTypeClass();
      if (a.getSpace().getSimpleExtentNpoints() != 1) continue;
      if (cls == H5T_STRING) {
        std::string s;
        a.read(a.getStrType(), s);
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
