// Every config key is declared once, in a table (type, default, bounds, help). The validator,
// the --set parser, the dry-run output and docs/configs.md all derive from that table.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace net2net::config {

using nlohmann::json;

enum class Type { Int, Number, String, Bool, NumberList, StringList };

struct Key {
  std::string path;            // dotted, e.g. "model.n_flows"
  Type type = Type::Number;
  json default_value;          // null: no default (see required / nullable)
  std::string help;
  bool required = false;       // must be given by the user
  bool nullable = false;       // null is a valid value (meaning: derive it)
  std::optional<double> min;   // inclusive bound (each element for lists)
  std::optional<double> max;   // inclusive bound
  bool full_uint64 = false;    // Int read as uint64 (seeds): up to 2^64 - 1, where others stop at 2^63 - 1
  std::vector<std::string> choices;  // allowed strings (empty: any)
  int list_size = -1;          // exact length for NumberList (-1: any)
  bool resume_may_change = false;  // may differ from the run's when it is resumed (--resume)
};

// The one set of builders the key tables are written with (config/cinn_config.cpp,
// config/expert_config.cpp): a Key of each type, and modifiers that return it changed.
namespace keys {
Key str(std::string path, json def, std::string help, std::vector<std::string> choices = {});
Key integer(std::string path, json def, std::string help, std::optional<double> min = {});
// A seed: an integer from 0 to 2^64 - 1.
Key seed(std::string path, json def, std::string help);
Key number(std::string path, json def, std::string help, std::optional<double> min = {}, std::optional<double> max = {});
Key boolean(std::string path, bool def, std::string help);
Key number_list(std::string path, json def, std::string help, int size, std::optional<double> min = {},
                std::optional<double> max = {});
Key string_list(std::string path, json def, std::string help);
Key required(Key k);   // the user must give it (no default)
Key nullable(Key k);   // null is valid (derived later)
Key resumable(Key k);  // may change on --resume (how long a run goes, how often it reports)
}  // namespace keys

class Schema {
 public:
  Schema(std::string kind, std::vector<Key> keys);

  const std::string& kind() const { return kind_; }
  const std::vector<Key>& keys() const { return keys_; }
  const Key* find(const std::string& path) const;

  // Validates `user` and returns it with every default filled in. Throws ConfigError naming
  // `origin` (the file) and the offending key: unknown keys (with the nearest valid one),
  // wrong types, values out of bounds, missing required keys.
  json resolve(const json& user, const std::string& origin) const;

  // Nearest declared key to `path` (edit distance), or "" when nothing is close.
  std::string suggest(const std::string& path) const;

  // A markdown table of the keys (for docs/configs.md and --help texts).
  std::string markdown() const;

  // A resumed run's config: its own values, but those of `requested` for the keys that may
  // change on resume. ConfigError listing every other key whose value differs (nested objects
  // compared whole), naming the keys that may change.
  json resumed_config(const json& run, const json& requested) const;

 private:
  bool is_section(const std::string& path) const;
  void check_value(const Key& key, const json& value, const std::string& origin) const;
  void walk(const json& node, const std::string& prefix, const std::string& origin) const;

  std::string kind_;
  std::vector<Key> keys_;
};

// "key.path=value": the value is parsed as JSON where it parses (numbers, booleans, arrays,
// null, quoted strings), else taken as a plain string. Intermediate objects are created.
void apply_override(json& config, const std::string& assignment);

// Reads a JSON file; ConfigError with the line and column of a syntax error, IoError when the
// file cannot be read.
json load_json_file(const std::string& path);

// Levenshtein distance, used for "did you mean" suggestions.
size_t edit_distance(const std::string& a, const std::string& b);

std::string type_name(Type type);

}  // namespace net2net::config
