// net2net-extract: runs experts over a data source into an HDF5 embedding cache; --merge joins
// shard files. The engine is lib/net2net/extract.
#include <algorithm>
#include <iostream>

#include "net2net/commands/commands.h"
#include "net2net/core/error.h"
#include "net2net/data/source.h"
#include "net2net/experts/expert.h"
#include "net2net/extract/extract.h"

namespace net2net::commands {
namespace {

// One "  USAGE  description" line per registry entry (sources or expert kinds), usages in a column.
template <class Entries>
std::string listing(const Entries& entries) {
  size_t width = 0;
  for (const auto& e : entries) width = std::max(width, e.usage.size());
  std::string out;
  for (const auto& e : entries) out += "\n  " + e.usage + std::string(width + 2 - e.usage.size(), ' ') + e.description;
  return out;
}

class ExtractTool : public cli::Tool {
 public:
  std::string name() const override { return "net2net-extract"; }
  std::string description() const override {
    return "Run one or more experts over a data source once and cache their representations,\n"
           "row-aligned, in one HDF5 file (docs/formats.md). An interrupted run (Ctrl-C, SIGTERM,\n"
           "SIGKILL, a SLURM time limit) continues with --resume; shards of an array job merge\n"
           "back into one file in source order with --merge.\n\n"
           "Sources (--data SOURCE):" +
           listing(data::source_schemes()) +
           "\n\nExperts (--expert NAME=EXPERT; a chain " + experts::kChainUsage +
           " feeds each one's output to the next):" + listing(experts::expert_registry().kinds()) +
           "\n\n"
           "Examples:\n"
           "  net2net-extract --data fashion-mnist:train --expert label=label \\\n"
           "      --expert ae=ts:experts/ae.pt:encode --out cache/train.h5\n"
           "  net2net-extract --data text:captions.txt --expert text=text-hash:256 --out cache/text.h5\n"
           "  net2net-extract --data gaussian:10000:140:2.0 --expert z=identity \\\n"
           "      --expert img=ts:biggan.pt:decode,ts:clf.pt:encode --out cache/pairs.h5\n"
           "  net2net-extract ... --shard $SLURM_ARRAY_TASK_ID/8 --out cache/part$SLURM_ARRAY_TASK_ID.h5\n"
           "  net2net-extract --merge --out cache/all.h5 cache/part*.h5";
  }
  void add_options(CLI::App& app) override {
    app.add_option("--data", req_.source, "SOURCE: " + data::source_usages() + " (docs/formats.md)");
    app.add_option("--expert", expert_args_, "NAME=EXPERT, repeatable; EXPERT: " + experts::expert_usages() + " (docs/experts.md)");
    app.add_option("--out", req_.out, "Output embedding cache (.h5)");
    app.add_option("--batch-size", req_.batch_size, "Items per expert call")->check(cli::positive_number());
    app.add_option("--limit", req_.limit, "Only the first N items of the source")->check(cli::positive_number());
    app.add_option("--shard", shard_, "I/N: only the items with index % N == I (for SLURM array jobs)");
    app.add_option("--data-dir", req_.data_dir, "Folder of the Fashion-MNIST files (default: the Debian package's)");
    app.add_option("--image-size", req_.image_size,
                   "images:/imagefolder: resize the shorter side to S (bilinear, antialiased), then centre crop SxS")
        ->check(CLI::Range(int64_t(1), int64_t(16384)))
        ->type_name("S");
    app.add_option("--image-mode", req_.image_mode, "images:/imagefolder: rgb or grey (default: as the first image)")
        ->check(CLI::IsMember({"rgb", "grey"}));
    app.add_flag("--skip-bad", req_.skip_bad,
                 "images:/imagefolder: skip unreadable or odd-sized files (counted in a warning) instead of stopping");
    app.add_option("--compress", req_.compression, "gzip level of the HDF5 datasets (0: none)")->check(CLI::Range(0, 9));
    app.add_flag("--resume", req_.resume, "Continue an interrupted extraction into --out");
    app.add_flag("--force", req_.force, "Overwrite an existing --out (or discard an interrupted one)");
    app.add_flag("--merge", merge_, "Merge the shard caches given as arguments into --out");
    app.add_option("inputs", inputs_, "With --merge: the shard caches");
  }
  int run(const cli::GlobalOptions& g) override {
    nlohmann::json summary;
    if (merge_) {
      if (req_.out.empty()) throw UsageError("--merge needs --out");
      summary = extract::merge_caches(inputs_, req_.out, req_.force, req_.compression);
    } else {
      if (!inputs_.empty()) throw UsageError("unexpected argument '" + inputs_[0] + "' (shard files go with --merge)");
      if (req_.source.empty()) throw UsageError("--data is required (see net2net-extract --help)");
      req_.experts = extract::parse_expert_args(expert_args_);
      if (!shard_.empty()) req_.shard = extract::parse_shard(shard_);
      req_.seed = g.seed;
      req_.device = g.device;
      summary = extract::run_extraction(req_);
    }
    if (g.json) std::cout << summary.dump() << std::endl;
    return 0;
  }

 private:
  extract::ExtractRequest req_;
  std::vector<std::string> expert_args_, inputs_;
  std::string shard_;
  bool merge_ = false;
};

}  // namespace

std::unique_ptr<cli::Tool> make_extract_tool() { return std::make_unique<ExtractTool>(); }

}  // namespace net2net::commands
