// The executables as users run them: --help/--version, exit codes, --dry-run output.
#include <gtest/gtest.h>
#include <H5Cpp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <torch/torch.h>
#include <torch/version.h>
#include <sstream>

#include "net2net/kernels/cpu/kernels.h"

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

struct Result {
  int rc = -1;
  std::string out, err;
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

fs::path work_dir() {
  static fs::path dir = [] {
    auto d = fs::temp_directory_path() / ("net2net_tools_" + std::to_string(::getpid()));
    fs::create_directories(d);
    return d;
  }();
  return dir;
}

// Runs a tool (by name) with a shell-quoted argument string.
Result run(const std::string& tool, const std::string& args) {
  auto out = work_dir() / "stdout.txt", err = work_dir() / "stderr.txt";
  std::string cmd = "cd '" + std::string(NET2NET_SOURCE_DIR) + "' && '" + std::string(NET2NET_TOOL_DIR) + "/" + tool +
                    "/" + tool + "' " + args + " > '" + out.string() + "' 2> '" + err.string() + "' < /dev/null";
  int status = std::system(cmd.c_str());
  Result r;
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

// Parameter count of the reference architecture, in closed form from the config.
int64_t mlp_params(int64_t in, int64_t hidden, int64_t depth, int64_t out) {
  return in * hidden + hidden + depth * (hidden * hidden + hidden) + hidden * out + out;
}
int64_t reference_parameter_count(const json& m) {
  int64_t d = m["in_dim"], e = m["embedding_dim"], h = m["hidden_dim"], depth = m["hidden_depth"];
  int64_t a = (d + 1) / 2, b = d / 2;
  int64_t block = 2 * d + 2 * mlp_params(a + e, h, depth, b) + 2 * mlp_params(b + e, h, depth, a);
  const json& em = m["embedder"];
  int64_t eh = em["hidden_dim"], edepth = em["depth"];
  int64_t embedder = mlp_params(m["cond_dim"], eh, edepth, e);
  if (em["norm"] != "none") embedder += 2 * eh * (edepth + 1);  // BatchNorm / ActNorm: weight + bias
  int64_t cond_maps = m["conditioning"] == "none" ? 0 : e * e + e;
  return m["n_flows"].get<int64_t>() * (block + cond_maps) + embedder;
}

void write_cache(const fs::path& file, int64_t rows, int64_t cond_dim, int64_t target_dim) {
  H5::H5File h5(file.string(), H5F_ACC_TRUNC);
  for (auto [name, dim] : {std::pair{"cond", cond_dim}, std::pair{"target", target_dim}}) {
    hsize_t dims[2] = {static_cast<hsize_t>(rows), static_cast<hsize_t>(dim)};
    H5::DataSpace space(2, dims);
    auto ds = h5.createDataSet(name, H5::PredType::IEEE_F32LE, space);
    std::vector<float> data(rows * dim, 0.5f);
    ds.write(data.data(), H5::PredType::NATIVE_FLOAT);
  }
}

}  // namespace

TEST(Tools, HelpAndVersionForEveryTool) {
  // The commit the build was configured at, read independently (empty outside a git checkout).
  std::string head;
  if (FILE* p = popen(("git -C '" + std::string(NET2NET_SOURCE_DIR) + "' rev-parse --short=12 HEAD 2>/dev/null").c_str(), "r")) {
    char buf[64] = {0};
    if (fgets(buf, sizeof buf, p)) head = buf;
    pclose(p);
    while (!head.empty() && std::isspace(static_cast<unsigned char>(head.back()))) head.pop_back();
  }
  for (const std::string tool : {"net2net-extract", "net2net-train", "net2net-translate", "net2net-eval"}) {
    auto help = run(tool, "--help");
    EXPECT_EQ(help.rc, 0) << tool << help.err;
    for (const char* needle : {"--threads", "--seed", "--device", "--log-level", "--json", "Example", "Exit codes"})
      EXPECT_NE(help.out.find(needle), std::string::npos) << tool << " --help lacks " << needle;
    auto version = run(tool, "--version");
    EXPECT_EQ(version.rc, 0);
    EXPECT_NE(version.out.find(tool + " 0."), std::string::npos) << version.out;
    // What a bug report needs: the commit, the LibTorch it runs on, CUDA/NCCL, the kernel ISA.
    const std::string torch_version = std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) +
                                      "." + std::to_string(TORCH_VERSION_PATCH);
    EXPECT_NE(version.out.find("LibTorch " + torch_version), std::string::npos) << version.out;
    EXPECT_NE(version.out.find("NCCL"), std::string::npos) << version.out;
    EXPECT_NE(version.out.find("CPU kernels: " + net2net::kernels::cpu::capability()), std::string::npos) << version.out;
    // The commit as configured: HEAD's, unless committed since without configuring again.
    const auto at = version.out.find("(commit ");
    ASSERT_NE(at, std::string::npos) << version.out;
    const std::string commit = version.out.substr(at + 8, 12);
    if (head.empty()) EXPECT_EQ(commit.substr(0, 7), "unknown") << version.out;
    else EXPECT_EQ(commit.find_first_not_of("0123456789abcdef"), std::string::npos) << version.out << " HEAD " << head;
  }
}

TEST(Tools, BadUsageExitsTwo) {
  EXPECT_EQ(run("net2net-train", "--threads -2").rc, 2);
  EXPECT_EQ(run("net2net-train", "--no-such-option").rc, 2);
  EXPECT_EQ(run("net2net-train", "--dry-run").rc, 2);  // no --config
  EXPECT_EQ(run("net2net-train", "--config /nonexistent.json --dry-run").rc, 2);
  EXPECT_EQ(run("net2net-eval", "").rc, 2);  // no subcommand
}

TEST(Tools, DryRunOfTextToBigGanReportsTheReferenceParameterCount) {
  auto r = run("net2net-train", "--config configs/text2biggan.json --dry-run");
  ASSERT_EQ(r.rc, 0) << r.err;
  json s = json::parse(r.out);
  EXPECT_EQ(s["parameters"]["total"].get<int64_t>(), reference_parameter_count(s["config"]["model"]));
  EXPECT_EQ(s["config"]["model"]["n_flows"], 24);
  // lr = devices * batch * base_lr
  EXPECT_DOUBLE_EQ(s["learning_rate"]["lr"].get<double>(), 16 * 4.5e-6);
  EXPECT_EQ(s["data"]["train"]["exists"], false);
  // And against an independent implementation of the reference in Python PyTorch.
  if (std::system("/usr/bin/python3 -c 'import torch' > /dev/null 2>&1") != 0)
    GTEST_SKIP() << "python3-torch missing (the test script installs it)";
  auto py = work_dir() / "py.txt";
  std::string cmd = "/usr/bin/python3 '" + std::string(NET2NET_SOURCE_DIR) +
                    "/tests/python/reference_flow.py' count '" + std::string(NET2NET_SOURCE_DIR) +
                    "/configs/text2biggan.json' > '" + py.string() + "'";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  EXPECT_EQ(std::stoll(slurp(py)), s["parameters"]["total"].get<int64_t>());
}

// The reference configs say they hold the original's hyper-parameters: the flow_config params (and
// batch size, base learning rate) of the CompVis/net2net YAML each names, transcribed here.
TEST(Tools, ReferenceConfigsHoldTheHyperParametersOfTheOriginalConfigsTheyName) {
  struct Original {
    const char* config;
    const char* yaml;  // in CompVis/net2net
    int cond_dim, embedding_dim, conditioning_depth, n_flows, in_channels, hidden_dim, hidden_depth, batch_size;
  };
  // All three: activation "none", conditioner_use_bn True, conditioning_hidden_dim 256 (the
  // default), conditioning_option "none" (the default), base_learning_rate 4.5e-6.
  const Original originals[] = {
      {"label2ae", "configs/creativity/celeba_celebahq_ffhq_256.yaml", 3, 10, 2, 20, 128, 1024, 2, 15},
      {"faces32to256", "configs/translation/faces32-to-faces256.yaml", 128, 128, 2, 20, 128, 1024, 2, 6},
      {"text2biggan", "configs/translation/sbert-to-biggan256.yaml", 768, 268, 2, 24, 268, 1024, 2, 16},
  };
  const bool python = std::system("/usr/bin/python3 -c 'import torch' > /dev/null 2>&1") == 0;
  for (const auto& o : originals) {
    const std::string path = std::string(NET2NET_SOURCE_DIR) + "/configs/" + o.config + ".json";
    auto r = run("net2net-train", "--config '" + path + "' --dry-run");
    ASSERT_EQ(r.rc, 0) << path << r.err;
    const json s = json::parse(r.out);
    const json& m = s["config"]["model"];
    SCOPED_TRACE(std::string(o.config) + " <-> " + o.yaml);
    EXPECT_NE(s["config"]["description"].get<std::string>().find(o.yaml), std::string::npos);
    EXPECT_EQ(m["cond_dim"], o.cond_dim);
    EXPECT_EQ(m["embedding_dim"], o.embedding_dim);
    EXPECT_EQ(m["embedder"]["depth"], o.conditioning_depth);
    EXPECT_EQ(m["embedder"]["hidden_dim"], 256);
    EXPECT_EQ(m["embedder"]["norm"], "batchnorm");
    EXPECT_EQ(m["n_flows"], o.n_flows);
    EXPECT_EQ(m["in_dim"], o.in_channels);
    EXPECT_EQ(m["hidden_dim"], o.hidden_dim);
    EXPECT_EQ(m["hidden_depth"], o.hidden_depth);
    EXPECT_EQ(m["activation"], "none");
    EXPECT_EQ(m["conditioning"], "none");
    EXPECT_EQ(s["config"]["train"]["batch_size"], o.batch_size);
    EXPECT_DOUBLE_EQ(s["config"]["train"]["base_lr"].get<double>(), 4.5e-6);
    // The parameter count of that architecture: closed form, and the Python reference module.
    const int64_t total = s["parameters"]["total"].get<int64_t>();
    EXPECT_EQ(total, reference_parameter_count(m));
    if (!python) continue;
    auto py = work_dir() / (std::string(o.config) + ".count");
    ASSERT_EQ(std::system(("/usr/bin/python3 '" + std::string(NET2NET_SOURCE_DIR) + "/tests/python/reference_flow.py' count '" +
                           path + "' > '" + py.string() + "'").c_str()), 0);
    EXPECT_EQ(std::stoll(slurp(py)), total);
  }
  if (!python) GTEST_SKIP() << "python3-torch missing: counted in closed form only";
}

TEST(Tools, EveryShippedConfigDryRuns) {
  for (const auto& entry : fs::directory_iterator(fs::path(NET2NET_SOURCE_DIR) / "configs")) {
    if (entry.path().extension() != ".json") continue;
    auto r = run("net2net-train", "--config '" + entry.path().string() + "' --dry-run --set train.seed=5");
    ASSERT_EQ(r.rc, 0) << entry.path() << r.err;
    json s = json::parse(r.out);
    EXPECT_EQ(s["parameters"]["total"].get<int64_t>(), reference_parameter_count(s["config"]["model"])) << entry.path();
    EXPECT_EQ(s["config"]["train"]["seed"], 5);
  }
}

TEST(Tools, CudaWithoutAGpuOrACudaLibTorchExitsTwoSayingWhich) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "a GPU is visible";
  auto r = run("net2net-train", "--config configs/text2biggan.json --dry-run --device cuda");
  EXPECT_EQ(r.rc, 2);
#ifdef NET2NET_TORCH_CUDA
  EXPECT_NE(r.err.find("no CUDA GPU is visible"), std::string::npos) << r.err;
#else
  EXPECT_NE(r.err.find("built against a LibTorch without CUDA"), std::string::npos) << r.err;
#endif
  EXPECT_EQ(run("net2net-train", "--config configs/text2biggan.json --dry-run --device gpu").rc, 2);
}

TEST(Tools, ConfigErrorsExitTwoNamingTheKey) {
  struct Case {
    std::string args, needle;
  };
  for (const Case& c : std::vector<Case>{
           {"--set model.n_flow=3", "did you mean 'model.n_flows'"},
           {"--set model.n_flows=abc", "'model.n_flows': expected an integer"},
           {"--set model.hidden_dim=-4", "'model.hidden_dim': must be >= 1"},
           {"--set train.amsgrad=maybe", "'train.amsgrad'"},
           {"--set model.activation=relu", "'model.activation'"},
           {"--set train.precision=fp16", "'train.precision'"},
           {"--set train.precision=bf16", "train.precision=bf16 needs --device cuda"},  // this run is on the cpu
       }) {
    auto r = run("net2net-train", "--config configs/text2biggan.json --dry-run " + c.args);
    EXPECT_EQ(r.rc, 2) << c.args;
    EXPECT_NE(r.err.find(c.needle), std::string::npos) << c.args << ": " << r.err;
    EXPECT_TRUE(r.out.empty()) << "nothing on stdout on error";
  }
  auto bad = work_dir() / "bad.json";
  std::ofstream(bad) << R"({"data": {"train": "x.h5", "condition": "c", "target": "t"}, "modle": {}})";
  auto r = run("net2net-train", "--config '" + bad.string() + "' --dry-run");
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("'modle'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("did you mean 'model"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(bad.string()), std::string::npos) << r.err;
}

TEST(Tools, DryRunTakesDimensionsFromTheCacheAndChecksThem) {
  auto cache = work_dir() / "pairs.h5";
  write_cache(cache, 10, 6, 9);
  std::string base = "--config configs/label2ae.json --dry-run --set data.train='" + cache.string() +
                     "' --set data.val=null --set data.condition=cond --set data.target=target ";
  auto r = run("net2net-train", base + "--set model.in_dim=null --set model.cond_dim=null");
  ASSERT_EQ(r.rc, 0) << r.err;
  json s = json::parse(r.out);
  EXPECT_EQ(s["config"]["model"]["in_dim"], 9);
  EXPECT_EQ(s["config"]["model"]["cond_dim"], 6);
  EXPECT_EQ(s["data"]["train"]["target"]["rows"], 10);
  EXPECT_EQ(s["parameters"]["total"].get<int64_t>(), reference_parameter_count(s["config"]["model"]));

  r = run("net2net-train", base + "--set model.in_dim=128 --set model.cond_dim=null");
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("'model.in_dim' is 128"), std::string::npos) << r.err;

  r = run("net2net-train", base + "--set data.target=nope --set model.in_dim=null --set model.cond_dim=null");
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("'/nope'"), std::string::npos) << r.err;

  r = run("net2net-train", base + "--set data.train=/nonexistent.h5 --set model.in_dim=null");
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("'model.in_dim'"), std::string::npos) << r.err;
}

TEST(Tools, ListKeysPrintsTheKeyTable) {
  auto r = run("net2net-train", "--list-keys");
  EXPECT_EQ(r.rc, 0);
  for (const char* key : {"`data.train`", "`model.n_flows`", "`train.base_lr`", "`model.embedder.norm`"})
    EXPECT_NE(r.out.find(key), std::string::npos) << key;
}

TEST(Tools, EvalRefusesNonFiniteRowsNamingThem) {
  auto feats = work_dir() / "nan_feats.h5";
  {
    H5::H5File h5(feats.string(), H5F_ACC_TRUNC);
    hsize_t dims[2] = {50, 3};
    std::vector<float> v(150);
    for (int i = 0; i < 150; ++i) v[i] = std::cos(0.3f * i);
    h5.createDataSet("good", H5::PredType::IEEE_F32LE, H5::DataSpace(2, dims)).write(v.data(), H5::PredType::NATIVE_FLOAT);
    v[3 * 7 + 1] = NAN;
    v[3 * 31] = INFINITY;
    h5.createDataSet("bad", H5::PredType::IEEE_F32LE, H5::DataSpace(2, dims)).write(v.data(), H5::PredType::NATIVE_FLOAT);
    hsize_t label_dims[1] = {50};
    std::vector<int64_t> labels(50, 1);
    h5.createDataSet("label", H5::PredType::STD_I64LE, H5::DataSpace(1, label_dims))
        .write(labels.data(), H5::PredType::NATIVE_INT64);
    hsize_t mu_dims[1] = {3}, sigma_dims[2] = {2, 2};
    std::vector<double> mu = {0, 0, 0}, sigma = {1, 0, 0, 1};
    H5::H5File stats((work_dir() / "bad.stats").string(), H5F_ACC_TRUNC);
    stats.createDataSet("mu", H5::PredType::IEEE_F64LE, H5::DataSpace(1, mu_dims)).write(mu.data(), H5::PredType::NATIVE_DOUBLE);
    stats.createDataSet("sigma", H5::PredType::IEEE_F64LE, H5::DataSpace(2, sigma_dims))
        .write(sigma.data(), H5::PredType::NATIVE_DOUBLE);
  }
  const std::string f = "'" + feats.string() + "'";
  // Before: exit 1 and LAPACK's "eigh failed to converge". Now: exit 2 naming the rows.
  auto fid = run("net2net-eval", "fid --real h5:" + f + ":good --fake h5:" + f + ":bad");
  EXPECT_EQ(fid.rc, 2) << fid.err;
  EXPECT_NE(fid.err.find(":bad': 2 rows hold NaN or Inf (rows 7, 31"), std::string::npos) << fid.err;
  auto props = run("net2net-eval", "accuracy --data h5:" + f + ":good --classifier identity --labels h5:" + f +
                                       ":label --props h5:" + f + ":bad --expected-props h5:" + f + ":good");
  EXPECT_EQ(props.rc, 2) << props.err;
  EXPECT_NE(props.err.find("--props 'h5:"), std::string::npos) << props.err;
  EXPECT_NE(props.err.find("rows 7, 31"), std::string::npos) << props.err;
  auto stats = run("net2net-eval", "fid --real h5:" + f + ":good --fake stats:'" + (work_dir() / "bad.stats").string() + "'");
  EXPECT_EQ(stats.rc, 2) << stats.err;
  EXPECT_NE(stats.err.find("/mu is [3] but /sigma is [2, 2]"), std::string::npos) << stats.err;
}

TEST(Tools, EvalIouScoresEachTargetsSamplesAndRefusesMismatchedMasks) {
  auto file = work_dir() / "masks.h5";
  // Two 4-cell targets; two samples each: {1,1,0,0} vs {1,0,0,0} (1/2), {1,1,0,0} (1),
  // {0,0,1,1} vs {0,0,1,1} (1), {0,0,0,0} (0).
  std::vector<float> target = {1, 1, 0, 0, 0, 0, 1, 1}, pred = {1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0};
  {
    H5::H5File h5(file.string(), H5F_ACC_TRUNC);
    hsize_t t_dims[2] = {2, 4}, p_dims[2] = {4, 4}, w_dims[2] = {2, 3};
    h5.createDataSet("target", H5::PredType::IEEE_F32LE, H5::DataSpace(2, t_dims)).write(target.data(), H5::PredType::NATIVE_FLOAT);
    h5.createDataSet("pred", H5::PredType::IEEE_F32LE, H5::DataSpace(2, p_dims)).write(pred.data(), H5::PredType::NATIVE_FLOAT);
    h5.createDataSet("wide", H5::PredType::IEEE_F32LE, H5::DataSpace(2, w_dims)).write(target.data(), H5::PredType::NATIVE_FLOAT);
  }
  const std::string f = "'" + file.string() + "'";
  auto r = run("net2net-eval", "iou --pred h5:" + f + ":pred --target h5:" + f + ":target");
  ASSERT_EQ(r.rc, 0) << r.err;
  auto j = json::parse(r.out);
  EXPECT_DOUBLE_EQ(j["iou"].get<double>(), (0.5 + 1 + 1 + 0) / 4);
  EXPECT_DOUBLE_EQ(j["pixel_agreement"].get<double>(), (0.75 + 1 + 1 + 0.5) / 4);
  EXPECT_EQ(j["per_target"], 2);
  auto wide = run("net2net-eval", "iou --pred h5:" + f + ":pred --target h5:" + f + ":wide");
  EXPECT_EQ(wide.rc, 2);
  EXPECT_NE(wide.err.find("4 cells per row"), std::string::npos) << wide.err;
  auto missing = run("net2net-eval", "iou --pred h5:" + f + ":pred --target h5:" + f + ":nosuch");
  EXPECT_NE(missing.rc, 0);
  EXPECT_NE(missing.err.find("nosuch"), std::string::npos) << missing.err;
}

TEST(Tools, EvalFidAndEnergyFromTheCommandLine) {
  auto feats = work_dir() / "feats.h5";
  {
    H5::H5File h5(feats.string(), H5F_ACC_TRUNC);
    for (auto [name, shift] : {std::pair{"real", 0.0f}, std::pair{"fake", 0.5f}}) {
      hsize_t dims[2] = {200, 4};
      auto ds = h5.createDataSet(name, H5::PredType::IEEE_F32LE, H5::DataSpace(2, dims));
      std::vector<float> v(800);
      for (int i = 0; i < 800; ++i) v[i] = std::sin(0.7f * i * (1 + shift)) + shift;
      ds.write(v.data(), H5::PredType::NATIVE_FLOAT);
    }
  }
  auto r = run("net2net-eval", "fid --real h5:'" + feats.string() + "':real --fake h5:'" + feats.string() +
                                   "':fake --save-stats '" + (work_dir() / "fake.stats").string() + "'");
  ASSERT_EQ(r.rc, 0) << r.err;
  json fid = json::parse(r.out);
  EXPECT_GT(fid["fid"].get<double>(), 0.1);
  EXPECT_EQ(fid["features"], "identity");
  EXPECT_TRUE(fid.contains("kid"));
  auto again = run("net2net-eval", "fid --real h5:'" + feats.string() + "':real --fake stats:'" + (work_dir() / "fake.stats").string() + "'");
  ASSERT_EQ(again.rc, 0) << again.err;
  EXPECT_DOUBLE_EQ(json::parse(again.out)["fid"].get<double>(), fid["fid"].get<double>());
  EXPECT_EQ(run("net2net-eval", "fid --real nonsense:x --fake h5:'" + feats.string() + "':fake").rc, 2);
  EXPECT_EQ(run("net2net-eval", "fid --real h5:'" + feats.string() + "':nope --fake h5:'" + feats.string() + "':fake").rc, 2);

  auto run_dir = work_dir() / "run";
  fs::create_directories(run_dir);
  std::ofstream(run_dir / "energy.json") << R"({"wall_seconds": 3600, "cpu_energy": {"measured": false, "note": "no RAPL"}, "gpu_energy": {"measured": false}})";
  auto md = run("net2net-eval", "energy --run '" + run_dir.string() + "' --power-profile dgx1");
  ASSERT_EQ(md.rc, 0) << md.err;
  EXPECT_NE(md.out.find("3.500 kWh"), std::string::npos) << md.out;
  EXPECT_NE(md.out.find("0.7560 EUR"), std::string::npos) << md.out;
  EXPECT_NE(md.out.find("1.0360 kg"), std::string::npos) << md.out;
  EXPECT_EQ(run("net2net-eval", "energy --run '" + run_dir.string() + "' --power-profile dgx1 --format csv").rc, 0);
  EXPECT_EQ(run("net2net-eval", "energy --run '" + run_dir.string() + "'").rc, 2);  // nothing measured, no profile
  EXPECT_EQ(run("net2net-eval", "energy --run '" + run_dir.string() + "' --power-profile nope").rc, 2);
}

TEST(Tools, EvalAccuracyCountsArgmaxAgainstIntegerLabels) {
  // identity as the classifier: the predicted class of a row is its argmax, so the expected
  // accuracy is counted here directly.
  auto file = work_dir() / "acc.h5";
  const int n = 10, k = 4;
  std::vector<float> scores(n * k);
  std::vector<int64_t> labels(n);
  int matches = 0;
  for (int i = 0; i < n; ++i) {
    const int top = (3 * i + 1) % k;
    for (int j = 0; j < k; ++j) scores[i * k + j] = j == top ? 2.0f : 0.1f * j;
    labels[i] = i % 3 == 0 ? (top + 1) % k : top;
    matches += labels[i] == top;
  }
  {
    H5::H5File h5(file.string(), H5F_ACC_TRUNC);
    hsize_t dims[2] = {n, k}, rows[1] = {n};
    h5.createDataSet("scores", H5::PredType::IEEE_F32LE, H5::DataSpace(2, dims)).write(scores.data(), H5::PredType::NATIVE_FLOAT);
    h5.createDataSet("label", H5::PredType::STD_I64LE, H5::DataSpace(1, rows)).write(labels.data(), H5::PredType::NATIVE_INT64);
  }
  const std::string f = "'" + file.string() + "'";
  auto r = run("net2net-eval", "accuracy --data h5:" + f + ":scores --classifier identity --labels h5:" + f + ":label");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(matches, 6);
  EXPECT_DOUBLE_EQ(json::parse(r.out)["accuracy"].get<double>(), matches / double(n));
  // A float code per row (a one-hot) is not a label column: a clear error, not 40 "labels".
  auto bad = run("net2net-eval", "accuracy --data h5:" + f + ":scores --classifier identity --labels h5:" + f + ":scores");
  EXPECT_EQ(bad.rc, 2);
  EXPECT_NE(bad.err.find("one integer class per row"), std::string::npos) << bad.err;
  EXPECT_NE(bad.err.find("4 per row"), std::string::npos) << bad.err;
}
