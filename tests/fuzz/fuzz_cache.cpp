// fuzz_cache: the readers of HDF5 files users hand in, all on the same bytes (the input is the file):
//   1. io::EmbeddingReader, aligned = false (h5:FILE:DATASET, --labels, --props) and true (caches):
//      datasets(), has(), info() and attributes(); read_rows() of the first rows, the last row and
//      an index list with repeats; read_int64() of integer datasets; rows past either end must be
//      refused;
//   2. net2net-train's data path: train::prepare_config (a config naming datasets "c" and "x" in
//      this file: inspect_cache, the provenance attributes) and train::load_pairs;
//   3. net2net-extract --merge of this file alone: extract::merge_caches (/index, "shard", ...);
//   4. net2net-eval's stats:FILE: metrics::load_stats, then the FID of the statistics with themselves
//      and the JSON the tool prints.
// Findings: sanitizer reports (also inside libhdf5: a malformed file must not crash it either),
// any exception but net2net::Error (H5::Exception, nlohmann's, c10::Error, std::bad_alloc ...), and
// a DatasetInfo that contradicts itself (negative sizes, an item_shape whose product is not cols:
// the h5 source shapes rows with it).
// Datasets that declare more than kMaxElements values (HDF5 allows huge, sparsely allocated
// ones) are only inspected, not read in full: reading them needs that much memory by design.
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "fuzz_common.h"
#include "net2net/extract/extract.h"
#include "net2net/io/embedding_store.h"
#include "net2net/metrics/fid.h"
#include "net2net/train/trainer.h"

namespace {
using net2net::fuzz::bounded_product;
using net2net::fuzz::expect_refusal;
using net2net::fuzz::finding;
using net2net::fuzz::run_guarded;
using nlohmann::json;
namespace io = net2net::io;

constexpr int64_t kMaxElements = int64_t(1) << 22;  // 16 MiB of float32
constexpr size_t kMaxDatasets = 16;

const net2net::fuzz::Scratch& scratch() {
  static const net2net::fuzz::Scratch s("fuzz_cache");
  return s;
}

// Every dataset of the file declares at most kMaxElements values (what the whole-file readers load).
bool all_small(const std::string& path) {
  bool small = false;
  run_guarded("EmbeddingReader (size survey)", [&] {
    io::EmbeddingReader r(path, /*aligned=*/false);
    small = true;
    for (const auto& name : r.datasets()) {
      const auto d = r.info(name);
      if (bounded_product(d.rows, d.cols, kMaxElements) < 0) small = false;
    }
  });
  return small;
}

void exercise_reader(const io::EmbeddingReader& r) {
  (void)r.attributes();
  const auto names = r.datasets();
  for (size_t k = 0; k < names.size() && k < kMaxDatasets; ++k) {
    const std::string& name = names[k];
    if (!r.has(name) || !r.has("/" + name)) finding("EmbeddingReader::has", "datasets() lists '" + name + "', has() denies it");
    const io::DatasetInfo d = r.info(name);
    if (d.rows < 0 || d.cols < 0) finding("EmbeddingReader::info", "'" + name + "' has negative rows or cols");
    int64_t shape_product = 1;
    for (int64_t s : d.item_shape)
      if (s < 0 || __builtin_mul_overflow(shape_product, s, &shape_product)) shape_product = -1;
    if (shape_product != d.cols)
      finding("EmbeddingReader::info", "'" + name + "': item_shape (" + std::to_string(d.item_shape.size()) +
                                           " dims) does not multiply to cols " + std::to_string(d.cols));
    if (bounded_product(d.rows, d.cols, kMaxElements) < 0) continue;
    const int64_t n = d.rows;
    (void)r.read_rows(name, 0, std::min<int64_t>(n, 4));
    if (n > 0) {
      (void)r.read_rows(name, n - 1, 1);
      (void)r.read_rows(name, std::vector<int64_t>{n - 1, 0, n / 2, 0, n / 2 + (n > 1 ? 1 : 0)});
    }
    expect_refusal("EmbeddingReader::read_rows past the end", [&] { (void)r.read_rows(name, n, 1); });
    expect_refusal("EmbeddingReader::read_rows before the start", [&] { (void)r.read_rows(name, -1, 1); });
    expect_refusal("EmbeddingReader::read_rows(indices) past the end", [&] { (void)r.read_rows(name, std::vector<int64_t>{n}); });
    if (d.is_integer) (void)r.read_int64(name);
  }
}

// A config for prepare_config: datasets "c" and "x" of the fuzzed file (as the seeds name them).
std::string train_config() {
  static const std::string path = [] {
    const std::string p = scratch().path("train.json");
    const json cfg = {{"data", {{"train", scratch().path("cache.h5")}, {"condition", "c"}, {"target", "x"}}}};
    net2net::fuzz::write_file(p, cfg.dump());
    return p;
  }();
  return path;
}
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);
  torch::set_num_threads(1);
  H5::Exception::dontPrint();
  train_config();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = scratch().path("cache.h5");
  net2net::fuzz::write_file(path, data, size);
  const bool small = all_small(path);

  // 1. The reader itself.
  for (bool aligned : {false, true})
    run_guarded(aligned ? "EmbeddingReader(aligned)" : "EmbeddingReader(unaligned)", [&] {
      io::EmbeddingReader r(path, aligned);
      if (!aligned && r.rows() != 0) finding("EmbeddingReader", "rows() of an unaligned reader is not 0");
      exercise_reader(r);
    });

  // 2. net2net-train: the config's view of the cache, then the pairs.
  run_guarded("train::prepare_config", [&] {
    json info;
    (void)net2net::train::prepare_config(train_config(), {}, false, 0, &info, /*require_data=*/true);
  });
  if (small) run_guarded("train::load_pairs", [&] { (void)net2net::train::load_pairs(path, "c", "x"); });

  // 3. net2net-extract --merge (and its --json summary).
  if (small) {
    const std::string merged = scratch().path("merged.h5");
    run_guarded("extract::merge_caches", [&] {
      (void)net2net::extract::merge_caches({path}, merged, /*force=*/true).dump();
    });
    ::unlink(merged.c_str());
  }

  // 4. net2net-eval fid --real stats:FILE.
  run_guarded("metrics::load_stats", [&] {
    auto s = net2net::metrics::load_stats(path);
    if (!s.mu.defined() || !s.sigma.defined() || s.mu.dim() != 1 || s.sigma.dim() != 2 ||
        s.sigma.size(0) != s.mu.size(0) || s.sigma.size(1) != s.mu.size(0))
      finding("metrics::load_stats", "returned statistics of inconsistent shapes");
    if (s.mu.size(0) <= 64) {
      auto r = net2net::metrics::frechet_distance(s, s);
      (void)json({{"fid", r.fid}, {"n_real", s.n}, {"dims", s.mu.size(0)}, {"features", s.features}}).dump();
    }
  });
  return 0;
}
