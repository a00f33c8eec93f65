// The config key table: validation errors name the key, --set parsing, the shipped configs.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>

#include "net2net/config/cinn_config.h"
#include "net2net/core/atomic_file.h"
#include "net2net/core/error.h"

using namespace net2net;
using namespace net2net::config;
namespace fs = std::filesystem;

namespace {
json minimal() {
  return json{{"data", {{"train", "t.h5"}, {"condition", "c"}, {"target", "z"}}}};
}

// Runs resolve_config and returns the ConfigError message ("" when it did not throw).
std::string config_error(json user, std::vector<std::string> sets = {}) {
  try {
    resolve_config(std::move(user), sets, "test.json");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(Schema, FillsEveryDefault) {
  json r = resolve_config(minimal(), {}, "test.json");
  for (const auto& key : cinn_schema().keys()) {
    json::json_pointer ptr("/" + std::regex_replace(key.path, std::regex("\\."), "/"));
    ASSERT_TRUE(r.contains(ptr)) << key.path;
  }
  EXPECT_EQ(r["model"]["n_flows"], 20);
  EXPECT_EQ(r["train"]["betas"], json::array({0.5, 0.9}));
  // The permutation seed follows train.seed when not given.
  EXPECT_EQ(r["model"]["permutation_seed"], r["train"]["seed"]);
}

TEST(Schema, UnknownKeyNamesItAndSuggestsTheNearest) {
  json u = minimal();
  u["model"]["n_flow"] = 3;
  std::string msg = config_error(u);
  EXPECT_NE(msg.find("'model.n_flow'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did you mean 'model.n_flows'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("test.json"), std::string::npos) << msg;

  // A key in the wrong section is found by its last part.
  u = minimal();
  u["train"]["hidden_dim"] = 3;
  msg = config_error(u);
  EXPECT_NE(msg.find("did you mean 'model.hidden_dim'"), std::string::npos) << msg;

  // Far from everything: no suggestion, still named.
  u = minimal();
  u["zzzzqqqq"] = 1;
  msg = config_error(u);
  EXPECT_NE(msg.find("'zzzzqqqq'"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("did you mean"), std::string::npos) << msg;
}

TEST(Schema, WrongTypesNameTheKey) {
  struct Case {
    std::string set, key;
  };
  for (const Case& c : std::vector<Case>{{"model.n_flows=\"many\"", "model.n_flows"},
                                         {"model.n_flows=2.5", "model.n_flows"},
                                         {"train.base_lr=fast", "train.base_lr"},
                                         {"train.amsgrad=1", "train.amsgrad"},
                                         {"train.betas=[0.5]", "train.betas"},
                                         {"model.activation=relu", "model.activation"},
                                         {"data.train=3", "data.train"},
                                         {"model=4", "model"},
                                         {"model.embedder.norm=null", "model.embedder.norm"}}) {
    std::string msg = config_error(minimal(), {c.set});
    EXPECT_NE(msg.find("'" + c.key + "'"), std::string::npos) << c.set << " -> " << msg;
  }
}

TEST(Schema, NegativeAndZeroSizesAreRefused) {
  for (const std::string key : {"model.n_flows", "model.hidden_dim", "model.embedding_dim", "train.batch_size",
                                 "model.embedder.hidden_dim", "model.in_dim"}) {
    std::string msg = config_error(minimal(), {key + "=-3"});
    EXPECT_NE(msg.find("'" + key + "'"), std::string::npos) << msg;
    EXPECT_NE(msg.find(">= 1"), std::string::npos) << msg;
  }
  // Depth 0 is allowed (one hidden layer), -1 is not.
  EXPECT_EQ(config_error(minimal(), {"model.hidden_depth=0"}), "");
  EXPECT_NE(config_error(minimal(), {"model.hidden_depth=-1"}), "");
}

TEST(Schema, IntegersBeyondInt64AreRefusedNotWrapped) {
  // JSON reads this as an unsigned integer; as int64 it was -1 and passed the ">= 1" check.
  for (const std::string key : {"model.n_flows", "model.hidden_dim", "train.steps"}) {
    std::string msg = config_error(minimal(), {key + "=18446744073709551615"});
    EXPECT_NE(msg.find("'" + key + "'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("out of range"), std::string::npos) << msg;
  }
  EXPECT_EQ(config_error(minimal(), {"train.steps=9223372036854775807"}), "");
  EXPECT_EQ(config_error(minimal(), {"train.seed=18446744073709551615"}), "");  // seeds are uint64
}

TEST(Override, TextThatIsNotUtf8IsRefusedNamingTheKey) {
  // Found by fuzzing: the resolved config is written as JSON, which threw nlohmann's type_error 316
  // (exit 1) at the dump.
  json c = json::object();
  for (const std::string bad : {"name=\xe9t\xe9", "train.steps=\xff", "na\xefve=1"}) {
    try {
      apply_override(c, bad);
      FAIL() << "accepted " << bad;
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("not valid UTF-8"), std::string::npos) << e.what();
    }
  }
  EXPECT_NO_THROW(apply_override(c, "name=caf\xc3\xa9"));  // UTF-8 is fine
  EXPECT_EQ(c["name"], "caf\xc3\xa9");
}

TEST(Schema, MissingRequiredKeyIsNamed) {
  json u = minimal();
  u["data"].erase("target");
  EXPECT_NE(config_error(u).find("'data.target'"), std::string::npos);
}

TEST(Schema, UnknownKindIsNamed) {
  json u = minimal();
  u["kind"] = "cin";
  std::string msg = config_error(u);
  EXPECT_NE(msg.find("'kind'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did you mean 'cinn'"), std::string::npos) << msg;
}

TEST(Override, ParsesJsonElseString) {
  json c = json::object();
  apply_override(c, "a.b=3");
  apply_override(c, "a.c=2.5e-3");
  apply_override(c, "a.d=true");
  apply_override(c, "a.e=[1,2]");
  apply_override(c, "a.f=hello world");
  apply_override(c, "a.g=\"7\"");
  apply_override(c, "a.h=null");
  apply_override(c, "x=a=b");  // only the first '=' splits
  EXPECT_TRUE(c["a"]["b"].is_number_integer());
  EXPECT_DOUBLE_EQ(c["a"]["c"].get<double>(), 2.5e-3);
  EXPECT_EQ(c["a"]["d"], true);
  EXPECT_EQ(c["a"]["e"], json::array({1, 2}));
  EXPECT_EQ(c["a"]["f"], "hello world");
  EXPECT_EQ(c["a"]["g"], "7");
  EXPECT_TRUE(c["a"]["h"].is_null());
  EXPECT_EQ(c["x"], "a=b");
  EXPECT_THROW(apply_override(c, "novalue"), UsageError);
  EXPECT_THROW(apply_override(c, "=3"), UsageError);
  EXPECT_THROW(apply_override(c, "a..b=3"), UsageError);
  EXPECT_THROW(apply_override(c, "a.b.c=3"), ConfigError);  // a.b is a value
}

TEST(Override, OverridesWinOverTheFile) {
  json r = resolve_config(minimal(), {"model.n_flows=7", "model.n_flows=9"}, "t");
  EXPECT_EQ(r["model"]["n_flows"], 9);
}

TEST(Schema, EditDistanceClosedForms) {
  EXPECT_EQ(edit_distance("", "abc"), 3u);
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(edit_distance("flaw", "lawn"), 2u);
  EXPECT_EQ(edit_distance("same", "same"), 0u);
}

TEST(Schema, LearningRateRule) {
  json r = resolve_config(minimal(), {"train.batch_size=16", "train.base_lr=4.5e-6"}, "t");
  EXPECT_DOUBLE_EQ(effective_learning_rate(r, 1), 16 * 4.5e-6);
  EXPECT_DOUBLE_EQ(effective_learning_rate(r, 8), 8 * 16 * 4.5e-6);
  r = resolve_config(minimal(), {"train.lr=0.001"}, "t");
  EXPECT_DOUBLE_EQ(effective_learning_rate(r, 8), 0.001);
}

TEST(Configs, EveryShippedConfigResolves) {
  int n = 0;
  for (const auto& entry : fs::directory_iterator(fs::path(NET2NET_SOURCE_DIR) / "configs")) {
    if (entry.path().extension() != ".json") continue;
    SCOPED_TRACE(entry.path().string());
    json r = load_config(entry.path().string(), {});
    EXPECT_FALSE(r["data"]["condition"].get<std::string>().empty());
    ++n;
  }
  EXPECT_GE(n, 4);
  // The example's expert configs (kinds autoencoder and classifier).
  for (const char* name : {"autoencoder", "classifier", "judge", "shape_classifier", "autoencoder_domains"}) {
    json r = load_config(std::string(NET2NET_SOURCE_DIR) + "/configs/example/" + name + ".json", {});
    EXPECT_NE(r["kind"], "cinn") << name;
    EXPECT_TRUE(r["model"].contains("channels")) << name;
  }
  // Each kind takes its own augmentations only.
  json ae = {{"kind", "autoencoder"}, {"train", {{"augment", "shape"}}}};
  EXPECT_NE(config_error(ae).find("invert-odd"), std::string::npos) << config_error(ae);
  json clf = {{"kind", "classifier"}, {"train", {{"augment", "invert-odd"}}}};
  EXPECT_NE(config_error(clf).find("shape"), std::string::npos) << config_error(clf);
  json bad = {{"kind", "autoencoder"}, {"model", {{"latent", 3}}}};
  EXPECT_NE(config_error(bad).find("did you mean 'model.latent_dim'"), std::string::npos) << config_error(bad);
}

TEST(Configs, ReferenceHyperParameters) {
  json t = load_config(std::string(NET2NET_SOURCE_DIR) + "/configs/text2biggan.json", {});
  EXPECT_EQ(t["model"]["in_dim"], 268);
  EXPECT_EQ(t["model"]["cond_dim"], 768);
  EXPECT_EQ(t["model"]["embedding_dim"], 268);
  EXPECT_EQ(t["model"]["n_flows"], 24);
  EXPECT_EQ(t["model"]["hidden_dim"], 1024);
  EXPECT_EQ(t["model"]["hidden_depth"], 2);
  EXPECT_EQ(t["model"]["activation"], "none");
  EXPECT_EQ(t["model"]["embedder"]["norm"], "batchnorm");
  EXPECT_EQ(t["train"]["batch_size"], 16);
  EXPECT_DOUBLE_EQ(t["train"]["base_lr"].get<double>(), 4.5e-6);
  EXPECT_EQ(t["train"]["amsgrad"], true);
  json l = load_config(std::string(NET2NET_SOURCE_DIR) + "/configs/label2ae.json", {});
  EXPECT_EQ(l["model"]["in_dim"], 128);
  EXPECT_EQ(l["model"]["cond_dim"], 3);
  EXPECT_EQ(l["model"]["embedding_dim"], 10);
  EXPECT_EQ(l["model"]["n_flows"], 20);
  EXPECT_EQ(l["train"]["batch_size"], 15);
  json f = load_config(std::string(NET2NET_SOURCE_DIR) + "/configs/faces32to256.json", {});
  EXPECT_EQ(f["model"]["in_dim"], 128);
  EXPECT_EQ(f["model"]["cond_dim"], 128);
  EXPECT_EQ(f["model"]["n_flows"], 20);
  EXPECT_EQ(f["train"]["batch_size"], 6);
}

TEST(Schema, TheFlowConfigDefaultsAreTheKeyTables) {
  // FlowConfig has no defaults of its own: default_flow_config reads the table's.
  auto c = default_flow_config(7, 5);
  auto def = [](const std::string& path) { return cinn_schema().find(path)->default_value; };
  EXPECT_EQ(c.in_dim, 7);
  EXPECT_EQ(c.cond_dim, 5);
  EXPECT_EQ(json(c.embedding_dim), def("model.embedding_dim"));
  EXPECT_EQ(json(c.n_flows), def("model.n_flows"));
  EXPECT_EQ(json(c.hidden_dim), def("model.hidden_dim"));
  EXPECT_EQ(json(c.hidden_depth), def("model.hidden_depth"));
  EXPECT_EQ(json(c.activation), def("model.activation"));
  EXPECT_EQ(json(c.leaky_relu_alpha), def("model.leaky_relu_alpha"));
  EXPECT_EQ(json(c.conditioning), def("model.conditioning"));
  EXPECT_EQ(json(c.embedder.hidden_dim), def("model.embedder.hidden_dim"));
  EXPECT_EQ(json(c.embedder.depth), def("model.embedder.depth"));
  EXPECT_EQ(json(c.embedder.norm), def("model.embedder.norm"));
  EXPECT_EQ(json(c.permutation_seed), def("train.seed"));  // null: train.seed
}

TEST(Schema, OnlyKeysMarkedResumableMayChangeOnResume) {
  const Schema& s = cinn_schema();
  json run = resolve_config(minimal(), {}, "run");
  // Marked in the table: the run's length and reporting; they are taken from the request.
  json later = resolve_config(minimal(), {"train.steps=5000", "train.val_every=7"}, "now");
  json resumed = s.resumed_config(run, later);
  EXPECT_EQ(resumed["train"]["steps"], 5000);
  EXPECT_EQ(resumed["train"]["val_every"], 7);
  EXPECT_EQ(resumed["model"], run["model"]);
  // Anything else is refused, every difference listed, nested objects compared whole.
  json other = resolve_config(minimal(), {"model.n_flows=3", "model.embedder.depth=1", "train.steps=9"}, "now");
  try {
    s.resumed_config(run, other);
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("model.n_flows: run 20, now 3"), std::string::npos) << msg;
    EXPECT_NE(msg.find("model.embedder"), std::string::npos) << msg;
    EXPECT_EQ(msg.find("train.steps:"), std::string::npos) << msg;
    EXPECT_NE(msg.find("only data.class_names, train.steps, train.log_every, train.val_every, train.checkpoint_every, "
                       "train.keep_previous, train.image_every, train.image_items, train.image_samples may change"),
              std::string::npos) << msg;
  }
  int resumable = 0;
  for (const auto& k : s.keys()) resumable += k.resume_may_change;
  EXPECT_EQ(resumable, 9);  // the five above, keep_previous and the training images' three (they do not change the run)
  // A run written before a key existed resumes: the key has its default there.
  json old_run = run;
  old_run["data"].erase("class_names");
  old_run["model"].erase("leaky_relu_alpha");
  json again = s.resumed_config(old_run, run);
  EXPECT_EQ(again["model"]["leaky_relu_alpha"], run["model"]["leaky_relu_alpha"]);
  EXPECT_TRUE(again["data"]["class_names"].is_null());
}

TEST(Docs, ConfigTableIsInSyncWithTheSchema) {
  std::string doc = read_text_file(std::string(NET2NET_SOURCE_DIR) + "/docs/configs.md");
  for (const Schema* schema : {&cinn_schema(), &autoencoder_schema(), &classifier_schema()})
    EXPECT_NE(doc.find(schema->markdown()), std::string::npos)
        << "docs/configs.md is stale for kind " << schema->kind() << ": regenerate its tables with `net2net-train --list-keys`";
}

TEST(JsonFile, SyntaxErrorGivesLineAndColumn) {
  auto path = fs::temp_directory_path() / "net2net_bad_config.json";
  {
    std::ofstream out(path);
    out << "{\n  \"model\": {\n    \"n_flows\": 3,,\n  }\n}\n";
  }
  try {
    load_json_file(path.string());
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("line 3"), std::string::npos) << msg;
    EXPECT_NE(msg.find(path.string()), std::string::npos) << msg;
  }
  // Found by fuzzing: a number beyond double made nlohmann throw out_of_range 406 (exit 1).
  std::ofstream(path) << "{\"train\": {\"lr\": 31e308}}";
  try {
    load_json_file(path.string());
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
  }
  json c = json::object();
  EXPECT_NO_THROW(apply_override(c, "train.lr=31e308"));  // --set: not JSON, so kept as text ...
  EXPECT_TRUE(c["train"]["lr"].is_string());              // ... which the key table then refuses
  fs::remove(path);
  EXPECT_THROW(load_json_file("/nonexistent/config.json"), IoError);
}

TEST(AtomicFile, FailedWriteLeavesTargetAndNoTemporary) {
  auto dir = fs::temp_directory_path() / "net2net_atomic_test";
  fs::remove_all(dir);
  auto target = (dir / "out.txt").string();
  write_text_atomically(target, "first");
  EXPECT_EQ(read_text_file(target), "first");
  EXPECT_THROW(write_atomically(target,
                                [](const std::string& tmp) {
                                  std::ofstream(tmp) << "half";
                                  throw IoError("disk full");
                                }),
               IoError);
  EXPECT_EQ(read_text_file(target), "first");
  int files = 0;
  for (auto& e : fs::directory_iterator(dir)) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
  write_text_atomically(target, "second");
  EXPECT_EQ(read_text_file(target), "second");
  fs::remove_all(dir);
}
