// The option registry (llama.cpp style): no flag declared twice, every tool has the global
// options, bad values are refused, environment variables fill values and flags override them.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdlib>
#include <set>
#include <vector>

#include "net2net/cli/options.h"
#include "net2net/core/runtime.h"

using namespace net2net::cli;

namespace {
// Parses `args` (without the program name) for `tool`; returns the global options.
GlobalOptions parse(const std::string& tool, std::vector<std::string> args) {
  auto t = make_tool(tool);
  GlobalOptions g;
  auto app = build_app(*t, g);
  std::reverse(args.begin(), args.end());  // CLI11's vector form takes arguments in reverse
  app->parse(args);
  return g;
}

void collect_names(const CLI::App& app, std::vector<std::string>& names) {
  for (const CLI::Option* opt : app.get_options()) {
    for (const auto& n : opt->get_lnames()) names.push_back("--" + n);
    for (const auto& n : opt->get_snames()) names.push_back("-" + n);
  }
}

struct EnvGuard {
  std::string name;
  EnvGuard(std::string n, const std::string& value) : name(std::move(n)) { setenv(name.c_str(), value.c_str(), 1); }
  ~EnvGuard() { unsetenv(name.c_str()); }
};
}  // namespace

TEST(Options, NoFlagIsDeclaredTwiceInAnyTool) {
  for (const auto& tool : tool_names()) {
    SCOPED_TRACE(tool);
    auto t = make_tool(tool);
    GlobalOptions g;
    std::unique_ptr<CLI::App> app;
    ASSERT_NO_THROW(app = build_app(*t, g));  // CLI11 throws OptionAlreadyAdded on a clash
    std::vector<std::string> names;
    collect_names(*app, names);
    std::set<std::string> unique(names.begin(), names.end());
    EXPECT_EQ(unique.size(), names.size());
    for (const auto* sub : app->get_subcommands({})) {
      std::vector<std::string> sub_names;
      collect_names(*sub, sub_names);
      for (const auto& n : sub_names) {
        if (n == "-h" || n == "--help") continue;  // every subcommand has its own help
        EXPECT_EQ(unique.count(n), 0u) << sub->get_name() << " redeclares " << n;
      }
    }
  }
}

TEST(Options, EveryToolHasTheGlobalOptionsAndVersion) {
  for (const auto& tool : tool_names()) {
    auto t = make_tool(tool);
    GlobalOptions g;
    auto app = build_app(*t, g);
    for (const auto& spec : global_option_specs())
      EXPECT_NE(app->get_option_no_throw(spec.flag), nullptr) << tool << " lacks " << spec.flag;
    EXPECT_NE(app->get_option_no_throw("--version"), nullptr) << tool;
    EXPECT_NE(app->get_option_no_throw("--help"), nullptr) << tool;
  }
}

TEST(Options, BadValuesAreRefused) {
  const std::vector<std::vector<std::string>> bad = {
      {"--threads", "-1"}, {"--threads", "many"}, {"--seed", "-5"},        {"--seed", "x"},
      {"--device", "tpu"}, {"--device", "cuda:x"}, {"--log-level", "loud"}, {"--no-such-flag"},
  };
  for (const auto& tool : tool_names()) {
    for (const auto& args : bad) {
      std::vector<std::string> a = args;
      if (tool == "net2net-eval") a.insert(a.begin(), {"energy", "--run", "r"});
      EXPECT_THROW(parse(tool, a), CLI::ParseError) << tool << " accepted " << args[0] << " " << args.back();
    }
  }
}

TEST(Options, NumericChecksSayWhatTheyWant) {
  CLI::Validator positive = positive_number(), non_negative = non_negative_number();
  for (std::string ok : {"1", "0.5", "1e3", "+2"}) {
    EXPECT_EQ(positive(ok), "") << ok;
    EXPECT_EQ(non_negative(ok), "") << ok;
  }
  for (std::string bad : {"0", "-0", "-1", "", "abc", "1x", "nan", "inf", "1e999"}) EXPECT_NE(positive(bad), "") << bad;
  std::string zero = "0", negative = "-0.5", word = "many";
  EXPECT_EQ(non_negative(zero), "");
  EXPECT_EQ(positive(zero), "must be a number greater than 0, got '0'");
  EXPECT_EQ(non_negative(negative), "must be a number >= 0, got '-0.5'");
  EXPECT_EQ(non_negative(word), "must be a number >= 0, got 'many'");
  // Through a tool: the message names the option.
  try {
    parse("net2net-translate", {"--samples", "0"});
    ADD_FAILURE() << "--samples 0 was accepted";
  } catch (const CLI::ParseError& e) {
    EXPECT_NE(std::string(e.what()).find("--samples"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("greater than 0, got '0'"), std::string::npos) << e.what();
  }
}

TEST(Options, GoodValuesParse) {
  auto g = parse("net2net-train", {"--threads", "2", "--seed", "7", "--device", "cuda:1", "--log-level", "debug", "--json"});
  EXPECT_EQ(g.threads, 2);
  EXPECT_EQ(g.seed, 7u);
  EXPECT_TRUE(g.seed_given);
  EXPECT_EQ(g.device, "cuda:1");
  EXPECT_EQ(g.log_level, "debug");
  EXPECT_TRUE(g.json);
  auto d = parse("net2net-train", {});
  EXPECT_EQ(d.threads, 0);
  EXPECT_EQ(d.seed, 23u);
  EXPECT_FALSE(d.seed_given);
  EXPECT_EQ(d.device, "cpu");
}

TEST(Options, EnvironmentFillsAndFlagsOverride) {
  EnvGuard threads("NET2NET_THREADS", "3");
  EnvGuard seed("NET2NET_SEED", "99");
  EnvGuard level("NET2NET_LOG_LEVEL", "error");
  auto g = parse("net2net-extract", {});
  EXPECT_EQ(g.threads, 3);
  EXPECT_EQ(g.seed, 99u);
  EXPECT_TRUE(g.seed_given);
  EXPECT_EQ(g.log_level, "error");
  auto f = parse("net2net-extract", {"--threads", "1", "--seed", "5"});
  EXPECT_EQ(f.threads, 1);
  EXPECT_EQ(f.seed, 5u);
}

TEST(Options, BadEnvironmentValueIsRefused) {
  EnvGuard threads("NET2NET_THREADS", "-4");
  EXPECT_THROW(parse("net2net-train", {}), CLI::ParseError);
}

TEST(Options, EnvNamesAreUnique) {
  std::set<std::string> envs, flags;
  for (const auto& s : global_option_specs()) {
    EXPECT_TRUE(flags.insert(s.flag).second) << s.flag;
    if (!s.env.empty()) {
      EXPECT_TRUE(envs.insert(s.env).second) << s.env;
    }
  }
}

// keep_freed_memory (every tool calls it): a training step frees and allocates its large
// gradients (8 MB per layer on text2biggan) again. By default glibc maps a block that large by
// itself and unmaps it on free, so every page faults again on the next step (measured: ~360k
// faults a step); with it such blocks come from the heap (below the program break) and freed
// ones are reused. (Counting page faults directly is erratic: memalign's fragments decide when
// a freed block fits again.)
TEST(Runtime, LargeBlocksComeFromTheHeap) {
#if !defined(__GLIBC__)
  GTEST_SKIP() << "glibc only";
#endif
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer's allocator replaces glibc's malloc and its tuning";
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  GTEST_SKIP() << "AddressSanitizer's allocator replaces glibc's malloc and its tuning";
#endif
#endif
  net2net::keep_freed_memory();
  void* p = std::malloc(8 << 20);
  ASSERT_NE(p, nullptr);
  void* brk = sbrk(0);
  EXPECT_LT(p, brk) << "an 8 MB block was mapped by itself: freed, its pages would go back to the kernel";
  std::free(p);
}
