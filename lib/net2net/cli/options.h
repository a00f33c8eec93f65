// The command-line layer shared by all four tools: the global options (declared once here,
// with environment-variable fallbacks), the Tool interface each command implements, and
// run_tool(), the whole of every executable's main().
#pragma once
#include <CLI/CLI.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "net2net/core/defaults.h"

namespace net2net::cli {

// Options every tool takes (the contract). Environment fallbacks: NET2NET_THREADS,
// NET2NET_SEED, NET2NET_DEVICE, NET2NET_LOG_LEVEL; a flag on the command line wins.
struct GlobalOptions {
  int threads = 0;           // 0: all available CPUs
  uint64_t seed = kDefaultSeed;
  bool seed_given = false;   // --seed or NET2NET_SEED was set
  std::string device = "cpu";
  std::string log_level = "info";
  bool json = false;
};

// One entry of the global option table (for docs and the registry test).
struct GlobalOptionSpec {
  std::string flag;
  std::string env;
  std::string help;
};
const std::vector<GlobalOptionSpec>& global_option_specs();

void add_global_options(CLI::App& app, GlobalOptions& g);

// Checks for numeric options that say what they want: "--samples: must be a number greater than
// 0, got '0'" (CLI11 2.1's PositiveNumber says "Value 0 not in range 0.000000 to 1.797...e308").
// Both refuse what is not a finite number.
CLI::Validator positive_number();
CLI::Validator non_negative_number();

class Tool {
 public:
  virtual ~Tool() = default;
  virtual std::string name() const = 0;
  virtual std::string description() const = 0;
  // Declares the tool's own options (and subcommands) on `app`.
  virtual void add_options(CLI::App& app) = 0;
  // Runs after parsing and after the global options took effect; returns the exit code.
  virtual int run(const GlobalOptions& g) = 0;
};

// The tools: "net2net-extract", "net2net-train", "net2net-translate", "net2net-eval".
std::vector<std::string> tool_names();
std::unique_ptr<Tool> make_tool(const std::string& name);

// The CLI11 app of a tool: global options, then the tool's own.
std::unique_ptr<CLI::App> build_app(Tool& tool, GlobalOptions& g);

// main() of every executable: parse, apply global options, run, map errors to exit codes
// (0 ok, 1 other failure, 2 bad usage/config/input, 3 I/O, 4 interrupted-resumable).
int run_tool(const std::string& name, int argc, char** argv);

}  // namespace net2net::cli
