// fuzz_sources: the data sources that parse files users hand in, opened through the public factory
// data::open_source(SPEC) as net2net-extract, -translate and -eval do, then size() and get() of a
// few batches (the first items, the last one, a middle one, repeats) and of indices that must be
// refused (size() and -1).
//
// Input: byte 0 chooses the source (modulo 6), the rest is the file:
//   0  text:FILE               the rest is the text file (one text per line)
//   1  tsv:FILE                the rest is the tsv file (header: text, optional label, numeric columns)
//   2  fashion-mnist:SPLIT     byte 1 bit 0: train / test; bytes 2-5: big-endian length L of the
//                              image file; then L bytes of IDX images, the rest IDX labels; this
//                              target gzips both (the IDX parser sees the fuzzer's bytes)
//   3  fashion-mnist:SPLIT     the same layout, the two parts written as the .gz files as they are
//                              (zlib's gzip header and inflate, or gzread's pass-through of raw bytes)
//   4  h5:FILE:DATASET         byte 1 picks DATASET from kH5Names; the rest is the HDF5 file
//   5  images:DIR              byte 1 bit 0: .png / .jpg; the rest is the one image of DIR (stb)
//
// Findings: sanitizer reports, any exception but net2net::Error, an out-of-range index that is not
// refused, and a batch that breaks the Batch contract (sizes that do not match the request,
// values that are not finite, decoded images outside [-1, 1]).
#include <spdlog/spdlog.h>
#include <torch/torch.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "fuzz_common.h"
#include "net2net/data/source.h"

namespace {
using net2net::fuzz::expect_refusal;
using net2net::fuzz::finding;
using net2net::fuzz::run_guarded;
namespace nd = net2net::data;  // not "data": that is the input's name below

const char* const kH5Names[] = {"x", "c", "label", "index", "img", "t", "z", "sigma"};

const net2net::fuzz::Scratch& scratch() {
  static const net2net::fuzz::Scratch s("fuzz_sources");
  return s;
}

void write_gzip(const std::string& path, const uint8_t* bytes, size_t n) {
  ::unlink(path.c_str());
  gzFile f = gzopen(path.c_str(), "wb1");
  if (!f || (n > 0 && gzwrite(f, bytes, static_cast<unsigned>(n)) != static_cast<int>(n)) || gzclose(f) != Z_OK) {
    std::fprintf(stderr, "cannot write '%s'\n", path.c_str());
    std::exit(1);
  }
}

// check_range: the source decodes images itself (Fashion-MNIST, images:DIR), so they are in [-1, 1];
// an h5 source passes on what its file holds.
void check_batch(const nd::Source& src, const nd::Batch& b, const std::vector<int64_t>& indices, bool check_range) {
  const auto fail = [&](const std::string& what) { finding("Source::get of " + src.spec(), what); };
  const int64_t n = static_cast<int64_t>(indices.size());
  if (b.size() != n || b.index != indices) fail("the batch's index is not the request");
  if (b.kind != src.kind()) fail("the batch's kind is not the source's");
  if (b.kind == nd::ItemKind::Text && static_cast<int64_t>(b.texts.size()) != n) fail("texts do not match the request");
  if (b.kind != nd::ItemKind::Text && !b.tensor.defined()) fail("no tensor in an image / vector batch");
  if (b.tensor.defined()) {
    if (b.tensor.dim() < 1 || b.tensor.size(0) != n) fail("the tensor's rows do not match the request");
    if (b.tensor.scalar_type() != torch::kFloat32) fail("the tensor is not float32");
    if (!torch::isfinite(b.tensor).all().item<bool>()) fail("the tensor holds NaN or Inf");
    if (check_range && b.kind == nd::ItemKind::Image && b.tensor.numel() > 0 && b.tensor.abs().max().item<float>() > 1.0f + 1e-5f)
      fail("image values outside [-1, 1]");
  }
  if (b.labels.defined() && (b.labels.dim() != 1 || b.labels.size(0) != n || b.labels.scalar_type() != torch::kLong))
    fail("labels do not match the request");
  if (src.has_labels() && !b.labels.defined()) fail("a source with labels gave a batch without");
}

void exercise(nd::Source& src, bool check_range) {
  const int64_t n = src.size();
  if (n < 0) finding("Source::size of " + src.spec(), "negative");
  (void)src.kind();
  (void)src.num_classes();
  (void)src.class_names();
  std::vector<std::vector<int64_t>> requests;
  if (n > 0) {
    std::vector<int64_t> first;
    for (int64_t i = 0; i < std::min<int64_t>(n, 8); ++i) first.push_back(i);
    requests = {first, {n - 1}, {n / 2, 0, n - 1, n / 2}};
  }
  for (const auto& idx : requests) {
    nd::Batch b;
    if (run_guarded("Source::get", [&] { b = src.get(idx); })) check_batch(src, b, idx, check_range);
  }
  expect_refusal("Source::get(size())", [&] { (void)src.get({n}); });
  expect_refusal("Source::get(-1)", [&] { (void)src.get({-1}); });
}
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);
  torch::set_num_threads(1);
  H5::Exception::dontPrint();
  std::filesystem::create_directories(scratch().path("fm"));
  std::filesystem::create_directories(scratch().path("img"));
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const int mode = data[0] % 6;
  const uint8_t arg = size > 1 ? data[1] : 0;
  std::string spec;
  nd::SourceOptions options;
  options.data_dir = scratch().path("fm");
  switch (mode) {
    case 0:
    case 1: {
      const std::string file = scratch().path(mode == 0 ? "in.txt" : "in.tsv");
      net2net::fuzz::write_file(file, data + 1, size - 1);
      spec = (mode == 0 ? "text:" : "tsv:") + file;
      break;
    }
    case 2:
    case 3: {
      if (size < 6) return 0;
      const bool train = arg & 1;
      const uint32_t len = (uint32_t(data[2]) << 24) | (uint32_t(data[3]) << 16) | (uint32_t(data[4]) << 8) | data[5];
      const size_t rest = size - 6, images = std::min<size_t>(len, rest);
      const std::string prefix = options.data_dir + (train ? "/train" : "/t10k");
      const std::string img = prefix + "-images-idx3-ubyte.gz", lbl = prefix + "-labels-idx1-ubyte.gz";
      if (mode == 2) {
        write_gzip(img, data + 6, images);
        write_gzip(lbl, data + 6 + images, rest - images);
      } else {
        net2net::fuzz::write_file(img, data + 6, images);
        net2net::fuzz::write_file(lbl, data + 6 + images, rest - images);
      }
      spec = train ? "fashion-mnist:train" : "fashion-mnist:test";
      break;
    }
    case 4: {
      if (size < 2) return 0;
      const std::string file = scratch().path("in.h5");
      net2net::fuzz::write_file(file, data + 2, size - 2);
      spec = "h5:" + file + ":" + kH5Names[arg % (sizeof kH5Names / sizeof kH5Names[0])];
      break;
    }
    default: {
      if (size < 2) return 0;
      std::error_code ec;
      std::filesystem::remove_all(scratch().path("img"), ec);
      std::filesystem::create_directories(scratch().path("img"));
      net2net::fuzz::write_file(scratch().path(arg & 1 ? "img/a.jpg" : "img/a.png"), data + 2, size - 2);
      spec = "images:" + scratch().path("img");
      break;
    }
  }
  std::unique_ptr<nd::Source> src;
  if (!run_guarded("data::open_source", [&] { src = nd::open_source(spec, options); })) return 0;
  if (!src) finding("data::open_source", "returned no source for '" + spec + "'");
  exercise(*src, /*check_range=*/mode == 2 || mode == 3 || mode == 5);
  return 0;
}
