#include "net2net/config/schema.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

#include "net2net/core/atomic_file.h"
#include "net2net/core/error.h"

namespace net2net::config {

std::string type_name(Type type) {
  switch (type) {
    case Type::Int: return "integer";
    case Type::Number: return "number";
    case Type::String: return "string";
    case Type::Bool: return "boolean";
    case Type::NumberList: return "list of numbers";
    case Type::StringList: return "list of strings";
  }
  return "?";
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

Schema::Schema(std::string kind, std::vector<Key> keys) : kind_(std::move(kind)), keys_(std::move(keys)) {}

const Key* Schema::find(const std::string& path) const {
  for (const auto& k : keys_)
    if (k.path == path) return &k;
  return nullptr;
}

bool Schema::is_section(const std::string& path) const {
  std::string prefix = path + ".";
  for (const auto& k : keys_)
    if (k.path.compare(0, prefix.size(), prefix) == 0) return true;
  return false;
}

std::string Schema::suggest(const std::string& path) const {
  std::string best;
  size_t best_d = std::string::npos;
  auto leaf = [](const std::string& p) {
    auto pos = p.rfind('.');
    return pos == std::string::npos ? p : p.substr(pos + 1);
  };
  // Candidates: every key and every section ("model", "model.embedder").
  std::vector<std::string> candidates;
  for (const auto& k : keys_) {
    candidates.push_back(k.path);
    for (size_t dot = k.path.find('.'); dot != std::string::npos; dot = k.path.find('.', dot + 1))
      candidates.push_back(k.path.substr(0, dot));
  }
  for (const auto& c : candidates) {
    // Whole path, or the last part alone (a key put in the wrong section).
    size_t d = std::min(edit_distance(path, c), edit_distance(leaf(path), leaf(c)) + 1);
    // A truncated name ("latent" for "latent_dim") is close whatever its length.
    const std::string a = leaf(path), b = leaf(c);
    if (a.size() >= 3 && b.compare(0, a.size(), a) == 0) d = std::min<size_t>(d, 1 + (path.size() - a.size() != c.size() - b.size()));
    if (d < best_d) best_d = d, best = c;
  }
  size_t limit = std::max<size_t>(2, leaf(path).size() / 3);
  return best_d <= limit ? best : std::string();
}

namespace {
std::string describe(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);  // never throws on bad UTF-8
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  const char* what = v.is_string() ? "string" : v.is_boolean() ? "boolean" : v.is_array() ? "array"
                     : v.is_object() ? "object" : v.is_null() ? "null" : "number";
  return std::string(what) + " " + s;
}

std::string fmt_bound(double b) {
  std::ostringstream ss;
  ss << b;
  return ss.str();
}

[[noreturn]] void fail(const std::string& origin, const std::string& key, const std::string& msg) {
  throw ConfigError("config '" + origin + "': key '" + key + "': " + msg);
}

void check_bounds(const Key& key, double x, const std::string& origin) {
  if (!std::isfinite(x)) fail(origin, key.path, "must be a finite number");
  if (key.min && x < *key.min) fail(origin, key.path, "must be >= " + fmt_bound(*key.min) + ", got " + fmt_bound(x));
  if (key.max && x > *key.max) fail(origin, key.path, "must be <= " + fmt_bound(*key.max) + ", got " + fmt_bound(x));
}

void set_path(json& root, const std::string& path, const json& value) {
  json* node = &root;
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (dot == std::string::npos) {
      (*node)[part] = value;
      return;
    }
    node = &(*node)[part];
    start = dot + 1;
  }
}

const json* get_path(const json& root, const std::string& path) {
  const json* node = &root;
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!node->is_object()) return nullptr;
    auto it = node->find(part);
    if (it == node->end()) return nullptr;
    if (dot == std::string::npos) return &*it;
    node = &*it;
    start = dot + 1;
  }
}
}  // namespace

void Schema::check_value(const Key& key, const json& v, const std::string& origin) const {
  if (v.is_null()) {
    if (key.nullable) return;
    fail(origin, key.path, "expected a " + type_name(key.type) + ", got null");
  }
  switch (key.type) {
    case Type::Int: {
      bool integral = v.is_number_integer() ||
                      (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>() &&
                       std::fabs(v.get<double>()) < 9e15);
      if (!integral) fail(origin, key.path, "expected an integer, got " + describe(v));
      // JSON reads 18446744073709551615 as an unsigned integer: it would wrap to -1 as int64.
      if (!key.full_uint64 && v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
        fail(origin, key.path, "integer " + describe(v) + " is out of range");
      check_bounds(key, v.get<double>(), origin);
      break;
    }
    case Type::Number:
      if (!v.is_number()) fail(origin, key.path, "expected a number, got " + describe(v));
      check_bounds(key, v.get<double>(), origin);
      break;
    case Type::String: {
      if (!v.is_string()) fail(origin, key.path, "expected a string, got " + describe(v));
      const auto s = v.get<std::string>();
      if (!key.choices.empty() && std::find(key.choices.begin(), key.choices.end(), s) == key.choices.end()) {
        std::string all;
        for (const auto& c : key.choices) all += (all.empty() ? "" : ", ") + c;
        fail(origin, key.path, "must be one of {" + all + "}, got \"" + s + "\"");
      }
      break;
    }
    case Type::Bool:
      if (!v.is_boolean()) fail(origin, key.path, "expected a boolean (true/false), got " + describe(v));
      break;
    case Type::NumberList:
      if (!v.is_array()) fail(origin, key.path, "expected a list of numbers, got " + describe(v));
      if (key.list_size >= 0 && static_cast<int>(v.size()) != key.list_size)
        fail(origin, key.path, "expected " + std::to_string(key.list_size) + " numbers, got " + std::to_string(v.size()));
      for (const auto& x : v) {
        if (!x.is_number()) fail(origin, key.path, "expected a list of numbers, got an element " + describe(x));
        check_bounds(key, x.get<double>(), origin);
      }
      break;
    case Type::StringList:
      if (!v.is_array()) fail(origin, key.path, "expected a list of strings, got " + describe(v));
      for (const auto& x : v)
        if (!x.is_string()) fail(origin, key.path, "expected a list of strings, got an element " + describe(x));
      break;
  }
}

void Schema::walk(const json& node, const std::string& prefix, const std::string& origin) const {
  for (auto it = node.begin(); it != node.end(); ++it) {
    std::string path = prefix.empty() ? it.key() : prefix + "." + it.key();
    if (const Key* key = find(path)) {
      check_value(*key, it.value(), origin);
    } else if (is_section(path)) {
      if (!it.value().is_object()) fail(origin, path, "expected an object (a section), got " + describe(it.value()));
      walk(it.value(), path, origin);
    } else {
      std::string hint = suggest(path);
      fail(origin, path, "unknown key" + (hint.empty() ? std::string() : " (did you mean '" + hint + "'?)"));
    }
  }
}

json Schema::resolve(const json& user, const std::string& origin) const {
  if (!user.is_object()) throw ConfigError("config '" + origin + "': expected a JSON object at the top level");
  walk(user, "", origin);
  json out = json::object();
  for (const auto& key : keys_) {
    const json* given = get_path(user, key.path);
    if (given) {
      json v = *given;
      if (key.type == Type::Int && v.is_number_float()) v = static_cast<int64_t>(v.get<double>());
      set_path(out, key.path, v);
    } else if (key.required) {
      fail(origin, key.path, "missing (required): " + key.help);
    } else {
      set_path(out, key.path, key.default_value);
    }
  }
  return out;
}

json Schema::resumed_config(const json& run, const json& requested) const {
  // A key the run's config lacks (it was written before the key existed) has its default there.
  json out = run;
  for (const auto& k : keys_)
    if (!get_path(out, k.path)) set_path(out, k.path, k.default_value);
  std::string diff, allowed;
  for (const auto& [section, values] : requested.items()) {
    if (!values.is_object()) continue;
    for (const auto& [key, value] : values.items()) {
      const std::string path = section + "." + key;
      const Key* k = find(path);
      const json* had = get_path(out, path);
      if (!(k && k->resume_may_change) && (!had || *had != value))
        diff += "\n  " + path + ": run " + (had ? had->dump() : std::string("null")) + ", now " + value.dump();
    }
  }
  for (const auto& k : keys_) {
    if (!k.resume_may_change) continue;
    allowed += (allowed.empty() ? "" : ", ") + k.path;
    if (const json* v = get_path(requested, k.path)) set_path(out, k.path, *v);
  }
  if (!diff.empty())
    throw ConfigError("--resume: the config differs from the run's (only " + allowed + " may change):" + diff);
  return out;
}

std::string Schema::markdown() const {
  std::ostringstream ss;
  ss << "| key | type | default | meaning |\n|---|---|---|---|\n";
  for (const auto& k : keys_) {
    std::string type = type_name(k.type);
    if (!k.choices.empty()) {
      type.clear();
      for (const auto& c : k.choices) type += (type.empty() ? "" : " \\| ") + ("`" + c + "`");
    }
    if (k.nullable) type += " or null";
    std::string def = k.required ? "(required)" : "`" + k.default_value.dump() + "`";
    std::string bounds;
    if (k.min) bounds += " Min " + fmt_bound(*k.min) + ".";
    if (k.max) bounds += " Max " + fmt_bound(*k.max) + ".";
    if (k.resume_may_change) bounds += " May change on --resume.";
    ss << "| `" << k.path << "` | " << type << " | " << def << " | " << k.help << bounds << " |\n";
  }
  return ss.str();
}

void apply_override(json& config, const std::string& assignment) {
  auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw UsageError("--set expects key.path=value, got '" + assignment + "'");
  std::string path = assignment.substr(0, eq);
  std::string text = assignment.substr(eq + 1);
  json value = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) value = text;  // not JSON: a plain string
  // The config is written as JSON (config.json, checkpoints, --dry-run): text must be UTF-8.
  for (const std::string* part : {&path, &text})
    try {
      (void)json(*part).dump();
    } catch (const json::type_error&) {
      throw UsageError("--set " + json(path).dump(-1, ' ', false, json::error_handler_t::replace) +
                       ": not valid UTF-8");
    }
  if (!config.is_object()) config = json::object();
  json* node = &config;
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (part.empty()) throw UsageError("--set: empty part in key path '" + path + "'");
    if (dot == std::string::npos) {
      (*node)[part] = value;
      return;
    }
    json& next = (*node)[part];
    if (next.is_null()) next = json::object();
    if (!next.is_object())
      throw ConfigError("--set " + path + ": '" + path.substr(0, dot) + "' is a value, not a section");
    node = &next;
    start = dot + 1;
  }
}

json load_json_file(const std::string& path) {
  std::string text = read_text_file(path);
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    // Turn nlohmann's byte offset into a line and column.
    size_t line = 1, col = 1;
    for (size_t i = 0; i + 1 < e.byte && i < text.size(); ++i) {
      if (text[i] == '\n') ++line, col = 1;
      else ++col;
    }
    throw ConfigError("config '" + path + "': invalid JSON at line " + std::to_string(line) + ", column " +
                      std::to_string(col) + ": " + e.what());
  } catch (const json::exception& e) {  // e.g. out_of_range 406: a number beyond double ("1e400")
    throw ConfigError("config '" + path + "': invalid JSON: " + e.what());
  }
}

namespace keys {
namespace {
Key make(std::string path, Type type, json def, std::string help) {
  Key k;
  k.path = std::move(path);
  k.type = type;
  k.default_value = std::move(def);
  k.help = std::move(help);
  return k;
}
}  // namespace
Key str(std::string path, json def, std::string help, std::vector<std::string> choices) {
  Key k = make(std::move(path), Type::String, std::move(def), std::move(help));
  k.choices = std::move(choices);
  return k;
}
Key integer(std::string path, json def, std::string help, std::optional<double> min) {
  Key k = make(std::move(path), Type::Int, std::move(def), std::move(help));
  k.min = min;
  return k;
}
Key seed(std::string path, json def, std::string help) {
  Key k = integer(std::move(path), std::move(def), std::move(help), 0);
  k.full_uint64 = true;
  return k;
}
Key number(std::string path, json def, std::string help, std::optional<double> min, std::optional<double> max) {
  Key k = make(std::move(path), Type::Number, std::move(def), std::move(help));
  k.min = min;
  k.max = max;
  return k;
}
Key boolean(std::string path, bool def, std::string help) { return make(std::move(path), Type::Bool, def, std::move(help)); }
Key number_list(std::string path, json def, std::string help, int size, std::optional<double> min,
                std::optional<double> max) {
  Key k = make(std::move(path), Type::NumberList, std::move(def), std::move(help));
  k.list_size = size;
  k.min = min;
  k.max = max;
  return k;
}
Key string_list(std::string path, json def, std::string help) {
  return make(std::move(path), Type::StringList, std::move(def), std::move(help));
}
Key required(Key k) {
  k.required = true;
  k.default_value = nullptr;
  return k;
}
Key nullable(Key k) {
  k.nullable = true;
  return k;
}
Key resumable(Key k) {
  k.resume_may_change = true;
  return k;
}
}  // namespace keys

}  // namespace net2net::config
