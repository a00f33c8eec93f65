#include "net2net/cli/options.h"

#include <spdlog/spdlog.h>
#include <c10/util/Exception.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <iostream>

#include "net2net/cli/completion.h"
#include "net2net/commands/commands.h"
#include "net2net/core/error.h"
#include "net2net/core/log.h"
#include "net2net/core/runtime.h"
#include "net2net/version.h"

namespace net2net::cli {

const std::vector<GlobalOptionSpec>& global_option_specs() {
  static const std::vector<GlobalOptionSpec> specs = {
      {"--threads", "NET2NET_THREADS", "CPU threads for LibTorch; 0 = all available cores (default)"},
      {"--seed", "NET2NET_SEED", "Random seed (default " + std::to_string(kDefaultSeed) + ", the reference's); makes runs repeatable"},
      {"--device", "NET2NET_DEVICE", "cpu or cuda[:N] (default cpu; cuda needs a CUDA build of LibTorch)"},
      {"--log-level", "NET2NET_LOG_LEVEL", "trace, debug, info, warn, error or off (logs go to stderr)"},
      {"--json", "", "Print a machine-readable JSON summary on stdout"},
  };
  return specs;
}

namespace {
const GlobalOptionSpec& spec(const std::string& flag) {
  for (const auto& s : global_option_specs())
    if (s.flag == flag) return s;
  throw std::logic_error("no global option " + flag);
}

std::string validate_device(const std::string& d) { return is_device_name(d) ? std::string() : "must be cpu, cuda or cuda:N"; }

CLI::Validator number_check(bool zero_allowed) {
  return CLI::Validator(
      [zero_allowed](const std::string& s) -> std::string {
        char* end = nullptr;
        errno = 0;
        const double v = std::strtod(s.c_str(), &end);
        const bool number = !s.empty() && end == s.c_str() + s.size() && errno != ERANGE && std::isfinite(v);
        if (number && (v > 0 || (zero_allowed && v == 0))) return {};
        return std::string("must be ") + (zero_allowed ? "a number >= 0" : "a number greater than 0") + ", got '" + s + "'";
      },
      zero_allowed ? "NONNEGATIVE" : "POSITIVE");
}
}  // namespace

CLI::Validator positive_number() { return number_check(false); }
CLI::Validator non_negative_number() { return number_check(true); }

void add_global_options(CLI::App& app, GlobalOptions& g) {
  app.add_option("--threads", g.threads, spec("--threads").help)
      ->envname(spec("--threads").env)
      ->check(CLI::Range(0, 4096))
      ->group("Global options");
  app.add_option_function<uint64_t>(
         "--seed", [&g](const uint64_t& s) { g.seed = s, g.seed_given = true; }, spec("--seed").help)
      ->envname(spec("--seed").env)
      ->check(CLI::Validator(
          [](const std::string& s) {
            return !s.empty() && s.size() <= 19 && s.find_first_not_of("0123456789") == std::string::npos
                       ? std::string()
                       : "must be a non-negative integer";
          },
          "UINT"))
      ->group("Global options");
  app.add_option("--device", g.device, spec("--device").help)
      ->envname(spec("--device").env)
      ->check(CLI::Validator(validate_device, "cpu|cuda[:N]"))
      ->group("Global options");
  app.add_option("--log-level", g.log_level, spec("--log-level").help)
      ->envname(spec("--log-level").env)
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}))
      ->group("Global options");
  app.add_flag("--json", g.json, spec("--json").help)->group("Global options");
}

std::vector<std::string> tool_names() {
  return {"net2net-extract", "net2net-train", "net2net-translate", "net2net-eval"};
}

std::unique_ptr<Tool> make_tool(const std::string& name) {
  if (name == "net2net-extract") return commands::make_extract_tool();
  if (name == "net2net-train") return commands::make_train_tool();
  if (name == "net2net-translate") return commands::make_translate_tool();
  if (name == "net2net-eval") return commands::make_eval_tool();
  throw std::invalid_argument("unknown tool " + name);
}

std::unique_ptr<CLI::App> build_app(Tool& tool, GlobalOptions& g) {
  auto app = std::make_unique<CLI::App>(tool.description(), tool.name());
  app->set_version_flag("--version", [name = tool.name()] { return version_report(name); },
                        "Print the version, commit, LibTorch, CUDA/NCCL and CPU kernel ISA, then exit");
  app->footer(
      "Exit codes: 0 ok, 1 other failure, 2 bad usage/config/input, 3 I/O error, 4 interrupted "
      "(checkpoint written; rerun with --resume).\nLogs go to stderr; with --json a summary goes to stdout.");
  add_global_options(*app, g);
  // Hidden: the bash completion script, generated from this very option table (installed by CMake).
  app->add_flag_callback("--bash-completion", [a = app.get(), name = tool.name()] {
       std::cout << bash_completion(*a, name);
       throw CLI::Success();
     })->group("");
  app->fallthrough();  // global options also after a subcommand (net2net-eval fid ... --threads 2)
  tool.add_options(*app);
  return app;
}

int run_tool(const std::string& name, int argc, char** argv) {
  std::unique_ptr<Tool> tool;
  GlobalOptions g;
  std::unique_ptr<CLI::App> app;
  try {
    tool = make_tool(name);
    app = build_app(*tool, g);
    app->parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app->exit(e);  // --help, --version
    std::cerr << name << ": error: " << e.what() << "\nRun '" << name << " --help' for the options.\n";
    return kExitBadInput;
  }
  try {
    setup_logging(g.log_level);
    g.device = check_device(g.device);
    int threads = set_threads(g.threads);
    keep_freed_memory();
    seed_everything(g.seed);
    spdlog::debug("{}: {} threads, device {}, seed {}", name, threads, g.device, g.seed);
    return tool->run(g);
  } catch (const Error& e) {
    spdlog::error("{}", e.what());
    return e.exit_code();
  } catch (const c10::Error& e) {
    spdlog::error("{}", e.what_without_backtrace());
    return kExitFailure;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return kExitFailure;
  }
}

}  // namespace net2net::cli
