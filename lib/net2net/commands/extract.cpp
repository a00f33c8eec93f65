// net2net-extract: runs experts over a data source into an HDF5 embedding cache.
// This stage declares the contract's options; the extraction itself lands with issue 3.
#include "net2net/commands/commands.h"
#include "net2net/core/error.h"

namespace net2net::commands {
namespace {

class ExtractTool : public cli::Tool {
 public:
  std::string name() const override { return "net2net-extract"; }
  std::string description() const override {
    return "Run one or more experts over a data source once and cache their representations,\n"
           "row-aligned, in one HDF5 file (docs/formats.md).\n\n"
           "Example:\n"
           "  net2net-extract --data fashion-mnist:train --expert label=label \\\n"
           "      --expert ae=ts:experts/ae.pt:encode --out cache/train.h5";
  }
  void add_options(CLI::App& app) override {
    app.add_option("--data", data_, "SOURCE: fashion-mnist:train|test, images:DIR, text:FILE, h5:FILE:DATASET, gaussian:N:DIM[:TRUNC]");
    app.add_option("--expert", experts_, "NAME=EXPERT (label, text-hash[:DIM], identity, ts:PATH[:METHOD], A,B,...); repeatable");
    app.add_option("--out", out_, "Output embedding cache (.h5)");
    app.add_option("--batch-size", batch_size_, "Items per expert call")->check(CLI::PositiveNumber);
    app.add_option("--limit", limit_, "Only the first N items")->check(CLI::PositiveNumber);
    app.add_option("--shard", shard_, "I/N: only items with index % N == I (SLURM array jobs)");
    app.add_option("--data-dir", data_dir_, "Folder of the Fashion-MNIST files (default: the Debian package's)");
    app.add_flag("--resume", resume_, "Continue an interrupted extraction into --out");
    app.add_flag("--force", force_, "Overwrite an existing --out");
  }
  int run(const cli::GlobalOptions&) override {
    throw NotImplemented("net2net-extract is not built yet (issue 3)");
  }

 private:
  std::string data_, out_, shard_, data_dir_;
  std::vector<std::string> experts_;
  int64_t batch_size_ = 256, limit_ = 0;
  bool resume_ = false, force_ = false;
};

}  // namespace

std::unique_ptr<cli::Tool> make_extract_tool() { return std::make_unique<ExtractTool>(); }

}  // namespace net2net::commands
