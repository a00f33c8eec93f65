// net2net-extract's engine: runs experts over a source once and caches their outputs in one
// HDF5 file, row-aligned. Work in progress lives in a journal folder OUT.partial/ (raw row
// files plus meta.json); a SIGKILL loses at most the rows not yet flushed, and --resume
// continues from the rows that all files hold. Only when every row is there is the HDF5 file
// written (to a temporary name, then renamed), so a file under OUT is always complete.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "net2net/core/defaults.h"

namespace net2net::extract {

struct ExpertSpec {
  std::string name;  // dataset name in the cache
  std::string spec;  // expert spec (label, ts:PATH, ...)
};

struct ShardSpec {
  int64_t index = 0;
  int64_t count = 1;
  std::string str() const { return std::to_string(index) + "/" + std::to_string(count); }
};

// "I/N" with 0 <= I < N; UsageError otherwise (e.g. "3/2").
ShardSpec parse_shard(const std::string& text);
// "NAME=SPEC" pairs; UsageError for a missing '=', a bad or reserved name (label, index), a
// repeated name.
std::vector<ExpertSpec> parse_expert_args(const std::vector<std::string>& args);

struct ExtractRequest {
  std::string source;
  std::vector<ExpertSpec> experts;
  std::string out;
  int64_t batch_size = 256;
  int64_t limit = 0;  // 0: all items
  ShardSpec shard;
  bool resume = false;
  bool force = false;
  int compression = 0;
  std::string data_dir;
  uint64_t seed = kDefaultSeed;
  std::string device = "cpu";
  // images: / imagefolder: (data::SourceOptions): resize + centre crop, rgb | grey, skip bad files
  int64_t image_size = 0;
  std::string image_mode;
  bool skip_bad = false;
};

// Runs (or resumes) an extraction; returns the JSON summary. Throws Interrupted (exit 4) after
// a stop signal, with every finished batch kept for --resume.
nlohmann::json run_extraction(const ExtractRequest& request);

// Merges shard caches into one file in source order (by /index). They must come from the same
// source and experts; duplicate rows are an error, missing shards a warning.
nlohmann::json merge_caches(const std::vector<std::string>& inputs, const std::string& out, bool force,
                            int compression = 0);

}  // namespace net2net::extract
