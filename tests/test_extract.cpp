// net2net-extract end to end: shards + merge equal the unsharded run, SIGKILL + --resume equals
// an uninterrupted run, h5py interop through the tool, bad input gives clear exit codes.
#include <H5Cpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <fcntl.h>
#include <spawn.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "net2net/core/error.h"
#include "net2net/extract/extract.h"
#include "net2net/io/embedding_store.h"
#include "test_util.h"

using namespace net2net;
namespace fs = std::filesystem;
using nlohmann::json;
using test::TempDir;
using test::slurp;
using test::spawn;
using test::wait_exit;

namespace {

const std::string kExtract = std::string(NET2NET_TOOL_DIR) + "/net2net-extract/net2net-extract";

// Every dataset of a equals b's (values, shapes), and both have the same datasets.
void expect_same_cache(const std::string& a, const std::string& b) {
  io::EmbeddingReader ra(a), rb(b);
  ASSERT_EQ(ra.rows(), rb.rows());
  auto names = ra.datasets();
  ASSERT_EQ(names, rb.datasets());
  for (const auto& n : names) {
    SCOPED_TRACE(n);
    auto ia = ra.info(n);
    if (ia.is_integer) {
      EXPECT_EQ(ra.read_int64(n), rb.read_int64(n));
    } else {
      EXPECT_EQ(ia.item_shape, rb.info(n).item_shape);
      EXPECT_EQ(ra.read_rows(n, 0, ra.rows()), rb.read_rows(n, 0, rb.rows()));
    }
  }
}

// 50 labelled vectors: v[i] = (i, -i, i / 10), label i % 4; row 13 of "neg" is negative.
std::string make_source(const TempDir& dir) {
  auto path = dir / "src.h5";
  io::write_store(path, {}, [](io::EmbeddingWriter& w) {
    w.create_float("v", 3);
    w.create_float("neg", 1);
    w.create_int64("label");
    for (int i = 0; i < 50; ++i) {
      float v[3] = {float(i), float(-i), i / 10.f}, n = i == 13 ? -1.f : 1.f;
      int64_t l = i % 4;
      w.append_float("v", v, 1);
      w.append_float("neg", &n, 1);
      w.append_int64("label", &l, 1);
    }
  });
  return path;
}

// A TorchScript expert: encode(x) = tanh(x W) repeated `rounds` times (slow when rounds is large),
// bad(x) = log(x).
std::string make_module(const std::string& path, int64_t dim, int rounds) {
  torch::jit::Module m("Slow");
  torch::manual_seed(1);
  m.register_parameter("W", torch::randn({dim, dim}) / std::sqrt(double(dim)), false);
  m.define("def encode(self, x):\n    y = x\n    for _ in range(" + std::to_string(rounds) +
           "):\n        y = torch.tanh(torch.matmul(y, self.W))\n    return y\n"
           "def bad(self, x):\n    return torch.log(x)\n");
  m.save(path);
  return path;
}

extract::ExtractRequest request(const std::string& source, const std::string& out) {
  extract::ExtractRequest r;
  r.source = source;
  r.out = out;
  r.batch_size = 7;
  r.experts = extract::parse_expert_args({"v=identity", "onehot=label"});
  return r;
}

// Waits until the journal holds at least `rows` rows (or the process ends).
bool wait_for_rows(const std::string& journal_index, int64_t rows, pid_t pid) {
  for (int i = 0; i < 3000; ++i) {
    std::error_code ec;
    auto size = fs::file_size(journal_index, ec);
    if (!ec && int64_t(size / 8) >= rows) return true;
    if (waitpid(pid, nullptr, WNOHANG) == pid) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}


}  // namespace

TEST(Extract, WritesAlignedDatasetsWithLabelsIndexAndProvenance) {
  TempDir dir("ex_basic");
  auto src = make_source(dir);
  auto summary = extract::run_extraction(request("h5:" + src + ":v", dir / "out.h5"));
  EXPECT_EQ(summary["rows"], 50);
  io::EmbeddingReader r(dir / "out.h5");
  EXPECT_EQ(r.rows(), 50);
  auto v = r.read_rows("v", 49, 1);
  EXPECT_EQ(v, (std::vector<float>{49.f, -49.f, 4.9f}));
  auto onehot = r.read_rows("onehot", 5, 1);
  EXPECT_EQ(onehot, (std::vector<float>{0, 1, 0, 0}));
  auto index = r.read_int64("index");
  EXPECT_EQ(index[17], 17);
  auto a = r.attributes();
  EXPECT_EQ(a["source"], "h5:" + src + ":v");
  EXPECT_EQ(a["complete"], 1);
  EXPECT_EQ(json::parse(a["experts"].get<std::string>())[1]["spec"], "label");
  EXPECT_FALSE(fs::exists(dir / "out.h5.partial"));
}

TEST(Extract, ShardsThenMergeEqualTheUnshardedRun) {
  TempDir dir("ex_shards");
  auto src = make_source(dir);
  extract::run_extraction(request("h5:" + src + ":v", dir / "full.h5"));
  std::vector<std::string> parts;
  for (int i = 3; i >= 0; --i) {  // any order
    auto r = request("h5:" + src + ":v", dir / ("part" + std::to_string(i) + ".h5"));
    r.shard = extract::parse_shard(std::to_string(i) + "/4");
    auto s = extract::run_extraction(r);
    EXPECT_EQ(s["rows"], i < 2 ? 13 : 12);
    parts.push_back(r.out);
  }
  extract::merge_caches(parts, dir / "merged.h5", false);
  expect_same_cache(dir / "full.h5", dir / "merged.h5");
  // Duplicates and foreign files are refused; the output is not overwritten without --force.
  EXPECT_THROW(extract::merge_caches({parts[0], parts[0]}, dir / "dup.h5", false), InputError);
  auto other = request("h5:" + src + ":neg", dir / "other.h5");
  extract::run_extraction(other);
  EXPECT_THROW(extract::merge_caches({parts[0], other.out}, dir / "mix.h5", false), InputError);
  EXPECT_THROW(extract::merge_caches(parts, dir / "merged.h5", false), UsageError);
  EXPECT_FALSE(fs::exists(dir / "dup.h5"));
  EXPECT_FALSE(fs::exists(dir / "mix.h5"));
}

// Caches of two sources (two domains, as the unpaired experiments need): merged domain by domain,
// each row labelled in /domain, shards of one source still put in order.
TEST(Extract, MergeOfTwoSourcesLabelsEachRowWithItsDomain) {
  TempDir dir("ex_domains");
  auto a = make_source(dir);
  const std::string b = dir / "second.h5";
  io::write_store(b, {}, [](io::EmbeddingWriter& w) {
    w.create_float("v", 3);
    w.create_int64("label");
    for (int i = 0; i < 20; ++i) {
      float v[3] = {100.f + i, 0.f, 1.f};
      int64_t l = 3 - i % 4;
      w.append_float("v", v, 1);
      w.append_int64("label", &l, 1);
    }
  });
  std::vector<std::string> parts;
  for (int i = 0; i < 2; ++i) {
    auto r = request("h5:" + a + ":v", dir / ("a" + std::to_string(i) + ".h5"));
    r.shard = extract::parse_shard(std::to_string(i) + "/2");
    extract::run_extraction(r);
    parts.push_back(r.out);
  }
  extract::run_extraction(request("h5:" + b + ":v", dir / "b.h5"));
  auto summary = extract::merge_caches({dir / "b.h5", parts[1], parts[0]}, dir / "both.h5", false);
  EXPECT_EQ(summary["rows"], 70);
  io::EmbeddingReader r(dir / "both.h5");
  auto domain = r.read_int64("domain"), index = r.read_int64("index");
  ASSERT_EQ(domain.size(), 70u);
  for (int k = 0; k < 70; ++k) {
    // Domains in the order of first appearance: b.h5's source first.
    EXPECT_EQ(domain[k], k < 20 ? 0 : 1) << k;
    EXPECT_EQ(index[k], k < 20 ? k : k - 20) << k;
    auto v = r.read_rows("v", k, 1);
    EXPECT_EQ(v[0], k < 20 ? 100.f + k : float(k - 20)) << k;
  }
  EXPECT_EQ(r.read_int64("label")[20 + 5], 5 % 4);
  auto attrs = r.attributes();
  EXPECT_EQ(json::parse(attrs["domains"].get<std::string>()), (json{"h5:" + b + ":v", "h5:" + a + ":v"}));
  // A merged cache of several sources is not merged again; other experts are still refused.
  EXPECT_THROW(extract::merge_caches({dir / "both.h5", dir / "b.h5"}, dir / "again.h5", false), InputError);
  auto other = request("h5:" + b + ":v", dir / "other.h5");
  other.experts = extract::parse_expert_args({"v=identity", "onehot=label:4"});
  extract::run_extraction(other);
  EXPECT_THROW(extract::merge_caches({parts[0], other.out}, dir / "mix.h5", false), InputError);
}

// Shards a merge cannot use are refused with an InputError naming the file and the dataset or
// attribute: a 2-D /index (its rows were read past the end), a "shard" attribute that is no
// "I/N" (nlohmann's type_error, std::stoll's exceptions), attributes that are not UTF-8 (dump()).
TEST(Extract, MergeRefusesMalformedIndexAndShardAttributesNamingTheFile) {
  TempDir dir("ex_merge_bad");
  H5::Exception::dontPrint();
  // Three rows, items first..first+2, with the attributes a merge compares.
  auto shard_file = [&](const std::string& name, int64_t first, const json& shard, const std::string& source = "gaussian:6:2") {
    const std::string path = dir / name;
    io::write_store(path, {}, [&](io::EmbeddingWriter& w) {
      w.create_float("v", 2);
      w.create_int64("index");
      float v[6] = {1, 2, 3, 4, 5, 6};
      int64_t index[3] = {first, first + 1, first + 2};
      w.append_float("v", v, 3);
      w.append_int64("index", index, 3);
      w.set_attribute("source", source);
      w.set_attribute("experts", "[]");
      w.set_attribute("expert_fingerprints", "{}");
      if (!shard.is_null()) w.set_attribute("shard", shard);
    });
    return path;
  };
  auto merge_error = [&](const std::vector<std::string>& inputs) {
    try {
      extract::merge_caches(inputs, dir / "merged.h5", /*force=*/true);
    } catch (const InputError& e) {
      EXPECT_EQ(e.exit_code(), 2);
      return std::string(e.what());
    }
    return std::string();
  };
  auto has = [](const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; };
  // The good case: two shards of two.
  const std::string a = shard_file("a.h5", 0, "0/2"), b = shard_file("b.h5", 3, "1/2");
  EXPECT_EQ(merge_error({b, a}), "");
  EXPECT_EQ(io::EmbeddingReader(dir / "merged.h5").read_int64("index"), (std::vector<int64_t>{0, 1, 2, 3, 4, 5}));
  // /index of [3, 2].
  const std::string wide = shard_file("wide.h5", 0, "0/1");
  {
    H5::H5File f(wide, H5F_ACC_RDWR);
    f.unlink("index");
    hsize_t dims[2] = {3, 2};
    int64_t index[6] = {0, 1, 2, 3, 4, 5};
    f.createDataSet("index", H5::PredType::STD_I64LE, H5::DataSpace(2, dims)).write(index, H5::PredType::NATIVE_INT64);
  }
  std::string msg = merge_error({wide});
  EXPECT_TRUE(has(msg, wide) && has(msg, "/index") && has(msg, "1-column integer")) << msg;
  // "shard" attributes that are no "I/N".
  for (const json& shard : {json(3), json("a/b"), json("0/99999999999999999999"), json("3/2")}) {
    const std::string bad = shard_file("shard.h5", 0, shard);
    msg = merge_error({bad});
    EXPECT_TRUE(has(msg, bad) && has(msg, "attribute 'shard'")) << shard.dump() << ": " << msg;
  }
  // Sources that differ (merged as domains) and are not UTF-8: the message still names both files.
  const std::string x = shard_file("x.h5", 0, "0/2", "h5:\xff.h5:v"), y = shard_file("y.h5", 3, "1/2", "h5:\xfe.h5:v");
  msg = merge_error({x, y});
  EXPECT_TRUE(has(msg, x) && has(msg, y) && has(msg, "source")) << msg;
}

TEST(Extract, ExistingOutputNeedsForceAndResumeChecksTheRequest) {
  TempDir dir("ex_exists");
  auto src = make_source(dir);
  auto r = request("h5:" + src + ":v", dir / "out.h5");
  extract::run_extraction(r);
  EXPECT_THROW(extract::run_extraction(r), UsageError);
  r.resume = true;
  EXPECT_TRUE(extract::run_extraction(r)["already_complete"].get<bool>());
  r.resume = false;
  r.force = true;
  EXPECT_EQ(extract::run_extraction(r)["rows"], 50);
  // A journal of a different request is not resumed into.
  fs::create_directories(dir / "x.h5.partial");
  std::ofstream(dir / "x.h5.partial/meta.json") << R"({"identity": {"source": "something else"}, "datasets": null})";
  auto x = request("h5:" + src + ":v", dir / "x.h5");
  EXPECT_THROW(extract::run_extraction(x), UsageError);  // neither --resume nor --force
  x.resume = true;
  try {
    extract::run_extraction(x);
    FAIL();
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("source"), std::string::npos) << e.what();
  }
}

TEST(Extract, NanOrInfNamesTheRow) {
  TempDir dir("ex_nan");
  auto src = make_source(dir);
  auto module = make_module(dir / "m.pt", 1, 1);
  auto r = request("h5:" + src + ":neg", dir / "out.h5");
  r.experts = extract::parse_expert_args({"x=ts:" + module + ":bad"});
  try {
    extract::run_extraction(r);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("item 13"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir / "out.h5"));
}

TEST(Extract, EmptySourceGivesAnEmptyCache) {
  TempDir dir("ex_empty");
  extract::ExtractRequest r;
  r.source = "gaussian:0:4";
  r.out = dir / "e.h5";
  r.experts = extract::parse_expert_args({"z=identity"});
  EXPECT_EQ(extract::run_extraction(r)["rows"], 0);
  EXPECT_EQ(io::EmbeddingReader(r.out).rows(), 0);
}

TEST(Extract, ArgumentParsing) {
  EXPECT_THROW(extract::parse_shard("3/2"), UsageError);
  EXPECT_THROW(extract::parse_shard("1/0"), UsageError);
  EXPECT_THROW(extract::parse_shard("a/b"), UsageError);
  EXPECT_EQ(extract::parse_shard("2/8").index, 2);
  EXPECT_THROW(extract::parse_expert_args({"label=label"}), UsageError);
  EXPECT_THROW(extract::parse_expert_args({"a=identity", "a=label"}), UsageError);
  EXPECT_THROW(extract::parse_expert_args({"noequals"}), UsageError);
  EXPECT_THROW(extract::parse_expert_args({"bad/name=identity"}), UsageError);
  EXPECT_THROW(extract::parse_expert_args({}), UsageError);
}

TEST(Extract, H5pyCacheThroughTheToolAndBackToH5py) {
  NET2NET_REQUIRE_PYTHON("h5py");
  TempDir dir("ex_h5py");
  ASSERT_EQ(test::run_python("tests/python/h5_interop.py write " + dir.str()), 0);
  extract::ExtractRequest r;
  r.source = "h5:" + (dir / "with_attrs.h5") + ":emb";
  r.out = dir / "ours.h5";
  r.batch_size = 8;
  r.experts = extract::parse_expert_args({"emb=identity"});
  extract::run_extraction(r);
  EXPECT_EQ(test::run_python("tests/python/h5_interop.py check " + r.out), 0);
}

TEST(ExtractTool, SigkillThenResumeEqualsAnUninterruptedRun) {
  TempDir dir("ex_kill");
  auto module = make_module(dir / "slow.pt", 64, 1000);
  std::vector<std::string> args = {kExtract, "--data", "gaussian:3000:64", "--expert", "y=ts:" + module,
                                   "--expert", "z=identity", "--batch-size", "16", "--threads", "1", "--log-level", "warn"};
  auto with = [&](std::vector<std::string> extra) {
    auto a = args;
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  pid_t pid = spawn(with({"--out", dir / "killed.h5"}), dir / "kill.log");
  ASSERT_TRUE(wait_for_rows(dir / "killed.h5.partial/index.i64", 200, pid)) << slurp(dir / "kill.log");
  kill(pid, SIGKILL);
  EXPECT_EQ(wait_exit(pid), 128 + SIGKILL);
  EXPECT_FALSE(fs::exists(dir / "killed.h5"));  // nothing that looks complete
  EXPECT_TRUE(fs::exists(dir / "killed.h5.partial"));
  // Resume (no --force: the journal is continued), then compare with a run that was never stopped.
  int rc = test::shell("'" + kExtract + "' --data gaussian:3000:64 --expert y=ts:'" + module +
                       "' --expert z=identity --batch-size 16 --threads 1 --log-level warn --json --resume --out '" + (dir / "killed.h5") +
                       "' > '" + (dir / "resume.json") + "'");
  ASSERT_EQ(rc, 0);
  EXPECT_GE(json::parse(slurp(dir / "resume.json"))["resumed_from"].get<int64_t>(), 200);
  ASSERT_EQ(test::shell("'" + kExtract + "' --data gaussian:3000:64 --expert y=ts:'" + module +
                        "' --expert z=identity --batch-size 16 --threads 1 --log-level warn --out '" + (dir / "clean.h5") + "'"),
            0);
  expect_same_cache(dir / "clean.h5", dir / "killed.h5");
  EXPECT_FALSE(fs::exists(dir / "killed.h5.partial"));
}

TEST(ExtractTool, SigtermStopsWithExitFourAndResumes) {
  TempDir dir("ex_term");
  auto module = make_module(dir / "slow.pt", 64, 1000);
  std::vector<std::string> args = {kExtract, "--data", "gaussian:3000:64", "--expert", "y=ts:" + module, "--batch-size", "16",
                                   "--threads", "1", "--out", dir / "t.h5"};
  pid_t pid = spawn(args, dir / "term.log");
  ASSERT_TRUE(wait_for_rows(dir / "t.h5.partial/index.i64", 100, pid)) << slurp(dir / "term.log");
  kill(pid, SIGTERM);
  EXPECT_EQ(wait_exit(pid), 4);
  EXPECT_NE(slurp(dir / "term.log").find("--resume"), std::string::npos) << slurp(dir / "term.log");
  args.push_back("--resume");
  EXPECT_EQ(wait_exit(spawn(args, dir / "resume.log")), 0) << slurp(dir / "resume.log");
  EXPECT_EQ(io::EmbeddingReader(dir / "t.h5").rows(), 3000);
}

TEST(ExtractTool, BadInputExitCodes) {
  TempDir dir("ex_bad");
  auto module = make_module(dir / "m.pt", 4, 1);
  auto rc = [&](const std::string& args) { return test::shell("'" + kExtract + "' " + args + " > /dev/null 2>&1"); };
  EXPECT_EQ(rc("--expert z=identity --out '" + (dir / "a.h5") + "'"), 2);                       // no --data
  EXPECT_EQ(rc("--data gaussian:5:4 --out '" + (dir / "a.h5") + "'"), 2);                       // no --expert
  EXPECT_EQ(rc("--data gaussian:5:4 --expert z=identity --shard 3/2 --out '" + (dir / "a.h5") + "'"), 2);
  EXPECT_EQ(rc("--data gaussian:5:4 --expert z=ts:'" + module + "':nomethod --out '" + (dir / "a.h5") + "'"), 2);
  EXPECT_EQ(rc("--data text:/nonexistent.txt --expert t=text-hash --out '" + (dir / "a.h5") + "'"), 3);
  EXPECT_EQ(rc("--data gaussian:5:4 --expert z=identity --out '" + (dir / "a.h5") + "'"), 0);
  EXPECT_EQ(rc("--data gaussian:5:4 --expert z=identity --out '" + (dir / "a.h5") + "'"), 2);  // exists
  EXPECT_EQ(rc("--data gaussian:5:4 --expert z=identity --force --out '" + (dir / "a.h5") + "'"), 0);
}

TEST(ExtractTool, TorchvisionResNetExportIsAStagedExpert) {
  NET2NET_REQUIRE_PYTHON("torchvision");
  TempDir dir("ex_resnet");
  auto file = dir / "r50.pt";
  ASSERT_EQ(test::run_python("scripts/experts/export_torchvision.py --arch resnet50 --size 32 --pool-stages --out '" + file + "'"), 0);
  auto module = torch::jit::load(file);
  for (const char* m : {"encode", "stem", "stage1", "stage2", "stage3", "stage4", "pool", "forward"})
    EXPECT_TRUE(module.find_method(m).has_value()) << m;
  ASSERT_EQ(test::shell("'" + kExtract + "' --data gaussian:0:1 --expert z=identity --out '" + (dir / "warm.h5") + "' > /dev/null 2>&1"), 0);
  // Images in, the contract's convention: [N,1,28,28] in [-1,1] through the h5 source.
  auto src = dir / "imgs.h5";
  io::write_store(src, {}, [](io::EmbeddingWriter& w) {
    w.create_float("img", 784, {1, 28, 28});
    std::vector<float> px(3 * 784);
    for (size_t i = 0; i < px.size(); ++i) px[i] = std::sin(0.01f * i);
    w.append_float("img", px.data(), 3);
  });
  ASSERT_EQ(test::shell("'" + kExtract + "' --data h5:'" + src + "':img --expert s3=ts:'" + file +
                        "':stage3 --expert logits=ts:'" + file + "':forward --log-level warn --out '" + (dir / "f.h5") + "'"),
            0);
  io::EmbeddingReader r(dir / "f.h5");
  EXPECT_EQ(r.info("s3").cols, 1024);
  EXPECT_EQ(r.info("logits").cols, 1000);
  // Same numbers as calling the module directly.
  auto x = torch::from_blob(io::EmbeddingReader(src).read_rows("img", 0, 3).data(), {3, 1, 28, 28}).clone();
  auto direct = module.get_method("stage3")({x}).toTensor();
  auto cached = torch::from_blob(r.read_rows("s3", 0, 3).data(), {3, 1024}).clone();
  EXPECT_TRUE(torch::allclose(direct, cached, 1e-5, 1e-5));
}
