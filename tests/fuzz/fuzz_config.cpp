// fuzz_config: net2net-train's config loader, config::load_config(FILE, --set overrides): the JSON
// file, the overrides applied in order, validation against the key table of the config's kind
// (cinn, or the example's autoencoder / classifier), derived values.
//
// Input: up to 4 leading lines "--set KEY=VALUE" (the overrides, in order), then the file's bytes:
//   --set train.steps=2
//   --set model.in_dim=16
//   {"data": {"train": "t.h5", "condition": "c", "target": "x"}}
//
// Findings, besides sanitizer reports: any exception but net2net::Error from load_config, or from
// what the tools do next with a config that loaded (--dry-run's and config.json's dump(), the
// typed views flow_config_from_json / effective_learning_rate, --resume's resumed_config of the
// config against itself); and a loaded config that breaks the key table's promises (an integer
// key that does not fit int64 or is out of its bounds, a number that is not finite, a value of the
// wrong type, resumed_config(c, c) refusing or differing from c).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "fuzz_common.h"
#include "net2net/config/cinn_config.h"
#include "net2net/config/schema.h"

namespace {
using net2net::fuzz::finding;
using net2net::fuzz::run_guarded;
using nlohmann::json;
namespace config = net2net::config;

const net2net::fuzz::Scratch& scratch() {
  static const net2net::fuzz::Scratch s("fuzz_config");
  return s;
}

const json* at_path(const json& root, const std::string& path) {
  const json* node = &root;
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    const std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!node->is_object() || !node->contains(part)) return nullptr;
    node = &(*node)[part];
    if (dot == std::string::npos) return node;
    start = dot + 1;
  }
}

void check_bounds(const config::Key& key, double x) {
  if (!std::isfinite(x)) finding("resolved config", "key '" + key.path + "' is not finite");
  if ((key.min && x < *key.min) || (key.max && x > *key.max))
    finding("resolved config", "key '" + key.path + "' is out of its bounds: " + std::to_string(x));
}

// What the key table promises about every value of a resolved config.
void check_resolved(const json& resolved, const config::Schema& schema) {
  for (const auto& key : schema.keys()) {
    const json* v = at_path(resolved, key.path);
    if (!v) finding("resolved config", "key '" + key.path + "' is missing");
    if (v->is_null()) {
      if (!key.nullable) finding("resolved config", "key '" + key.path + "' is null but not nullable");
      continue;
    }
    const auto wrong = [&](const char* want) { finding("resolved config", "key '" + key.path + "' is not " + want); };
    switch (key.type) {
      case config::Type::Int: {
        if (!v->is_number_integer()) wrong("an integer");
        // What the typed views read it as (get<int64_t>); a larger unsigned value wraps there.
        if (v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
          wrong("an int64 (it is larger)");
        check_bounds(key, double(v->get<int64_t>()));
        break;
      }
      case config::Type::Number:
        if (!v->is_number()) wrong("a number");
        check_bounds(key, v->get<double>());
        break;
      case config::Type::String:
        if (!v->is_string()) wrong("a string");
        if (!key.choices.empty() && std::find(key.choices.begin(), key.choices.end(), v->get<std::string>()) == key.choices.end())
          wrong("one of its choices");
        break;
      case config::Type::Bool:
        if (!v->is_boolean()) wrong("a boolean");
        break;
      case config::Type::NumberList:
        if (!v->is_array()) wrong("a list");
        if (key.list_size >= 0 && int(v->size()) != key.list_size) wrong("a list of its size");
        for (const auto& x : *v) {
          if (!x.is_number()) wrong("a list of numbers");
          check_bounds(key, x.get<double>());
        }
        break;
      case config::Type::StringList:
        if (!v->is_array()) wrong("a list");
        for (const auto& x : *v)
          if (!x.is_string()) wrong("a list of strings");
        break;
    }
  }
}
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);
  scratch();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The --set lines, then the file.
  std::vector<std::string> overrides;
  size_t pos = 0;
  while (overrides.size() < 4 && size - pos >= 6 && std::memcmp(data + pos, "--set ", 6) == 0) {
    const auto* nl = static_cast<const uint8_t*>(std::memchr(data + pos, '\n', size - pos));
    const size_t end = nl ? size_t(nl - data) : size;
    overrides.emplace_back(reinterpret_cast<const char*>(data) + pos + 6, end - pos - 6);
    pos = nl ? end + 1 : size;
  }
  const std::string path = scratch().path("config.json");
  net2net::fuzz::write_file(path, data + pos, size - pos);

  json resolved;
  if (!run_guarded("config::load_config", [&] { resolved = config::load_config(path, overrides); })) return 0;

  // A config that loaded: the tools print it (--dry-run), write it (RUN_DIR/config.json, the
  // checkpoint) and read it back through the typed views.
  run_guarded("dump of the resolved config (--dry-run, config.json)", [&] { (void)resolved.dump(2); });
  if (!resolved.contains("kind") || !resolved["kind"].is_string()) finding("resolved config", "no string 'kind'");
  const std::string kind = resolved["kind"].get<std::string>();
  const config::Schema* schema = nullptr;
  if (!run_guarded("config::schema_for_kind", [&] { schema = &config::schema_for_kind(kind, path); }))
    finding("config::schema_for_kind", "refused the kind of a config that loaded: " + kind);
  check_resolved(resolved, *schema);

  if (kind == "cinn") {
    run_guarded("config::effective_learning_rate", [&] { (void)config::effective_learning_rate(resolved, 1); });
    const json& m = resolved["model"];
    if (!m["in_dim"].is_null() && !m["cond_dim"].is_null())
      run_guarded("config::flow_config_from_json", [&] { (void)config::flow_config_from_json(resolved); });
  }
  // --resume compares the run's config with the requested one: a config against itself is no change.
  json again;
  if (!run_guarded("Schema::resumed_config", [&] { again = schema->resumed_config(resolved, resolved); }))
    finding("Schema::resumed_config", "refused to resume a config with itself");
  if (again != resolved) finding("Schema::resumed_config", "resuming a config with itself changed it");
  return 0;
}
