// Training: approaches the analytic optimum on Gaussian pairs; exact resume after SIGKILL;
// signals write a checkpoint and exit 4; corrupt checkpoints give clear errors; two Gloo ranks
// equal one process on the combined batch; energy records; rendezvous from the environment.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>
#include <tuple>

#include "net2net/core/error.h"
#include "net2net/io/checkpoint.h"
#include "net2net/io/embedding_store.h"
#include "net2net/train/distributed.h"
#include "net2net/train/energy.h"
#include "net2net/train/lr_schedule.h"
#include "net2net/train/trainer.h"
#include "net2net/train/warm_start.h"
#include "test_util.h"

using namespace net2net;
namespace fs = std::filesystem;
using nlohmann::json;
using test::TempDir;
using test::slurp;
using test::spawn;
using test::wait_exit;
using torch::Tensor;

namespace {

const std::string kTrain = std::string(NET2NET_TOOL_DIR) + "/net2net-train/net2net-train";

// x = A c + L e with c ~ N(0, I_2), e ~ N(0, I_3): p(x | c) = N(A c, L L^T).
struct Gaussian {
  Tensor A = torch::tensor({1.0, -0.5, 0.3, 0.8, 0.0, 1.2}, torch::kFloat64).view({3, 2});
  Tensor L = torch::tensor({0.5, 0.0, 0.0, 0.2, 0.3, 0.0, -0.1, 0.1, 0.4}, torch::kFloat64).view({3, 3});
  std::pair<Tensor, Tensor> sample(int64_t n, uint64_t seed) const {
    auto g = at::detail::createCPUGenerator(seed);
    auto c = at::randn({n, 2}, g, torch::kFloat64);
    auto x = c.matmul(A.t()) + at::randn({n, 3}, g, torch::kFloat64).matmul(L.t());
    return {c, x};
  }
  // Mean of 0.5 |L^-1 (x - A c)|^2 + log|det L| over the sample: the loss of the true model.
  double optimum_loss(const Tensor& c, const Tensor& x) const {
    auto v = at::linalg_solve_triangular(L, (x - c.matmul(A.t())).t(), /*upper=*/false, /*left=*/true, /*unitriangular=*/false).t();
    return (0.5 * v.pow(2).sum(1)).mean().item<double>() + L.diag().abs().log().sum().item<double>();
  }
};

void write_pairs(const std::string& path, const Tensor& c, const Tensor& x) {
  io::write_store(path, {}, [&](io::EmbeddingWriter& w) {
    auto cf = c.to(torch::kFloat32).contiguous(), xf = x.to(torch::kFloat32).contiguous();
    w.create_float("c", cf.size(1));
    w.create_float("x", xf.size(1));
    w.append_float("c", cf.data_ptr<float>(), cf.size(0));
    w.append_float("x", xf.data_ptr<float>(), xf.size(0));
  });
}

// A small run config over caches in `dir`.
std::string write_config(const TempDir& dir, const std::string& name, json train, json model = json::object()) {
  json m = {{"n_flows", 4}, {"hidden_dim", 64}, {"hidden_depth", 1}, {"embedding_dim", 8},
            {"embedder", {{"hidden_dim", 32}, {"depth", 1}, {"norm", "none"}}}};
  m.update(model);
  json cfg = {{"name", name},
              {"data", {{"train", dir / "train.h5"}, {"val", dir / "val.h5"}, {"condition", "c"}, {"target", "x"}}},
              {"model", m},
              {"train", train}};
  auto path = dir / (name + ".json");
  std::ofstream(path) << cfg.dump(2);
  return path;
}

void make_data(const TempDir& dir, int64_t n_train = 8000) {
  Gaussian g;
  auto [c, x] = g.sample(n_train, 1);
  write_pairs(dir / "train.h5", c, x);
  auto [cv, xv] = g.sample(2000, 2);
  write_pairs(dir / "val.h5", cv, xv);
}

std::vector<Tensor> params_of(const std::string& checkpoint) {
  return io::load_flow_checkpoint(checkpoint).model->parameters();
}

// Highest train step logged in a run's metrics.jsonl.
int64_t logged_step(const std::string& run_dir) {
  std::ifstream in(run_dir + "/metrics.jsonl");
  std::string line;
  int64_t step = 0;
  while (std::getline(in, line)) {
    auto j = json::parse(line, nullptr, false);
    if (!j.is_discarded()) step = std::max<int64_t>(step, j.value("step", int64_t(0)));
  }
  return step;
}

bool wait_for_step(const std::string& run_dir, int64_t step, pid_t pid) {
  for (int i = 0; i < 6000; ++i) {
    if (logged_step(run_dir) >= step) return true;
    if (waitpid(pid, nullptr, WNOHANG) == pid) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

int free_port() {
  // A port from the pid keeps parallel test runs apart; 20000-29999.
  return 20000 + (::getpid() * 7) % 10000;
}

}  // namespace

TEST(Train, GaussianPairsApproachTheAnalyticOptimum) {
  TempDir dir("train_gauss");
  make_data(dir);
  auto cfg = write_config(dir, "gauss", {{"batch_size", 256}, {"steps", 800}, {"lr", 0.003}, {"log_every", 100},
                                         {"val_every", 200}, {"checkpoint_every", 400}});
  train::TrainOptions o;
  o.config_path = cfg;
  o.run_dir = dir / "run";
  auto summary = train::run_training(o);
  EXPECT_EQ(summary["steps"], 800);
  Gaussian g;
  auto [cv, xv] = g.sample(2000, 2);
  const double optimum = g.optimum_loss(cv, xv);
  auto eval = train::evaluate_nll(dir / "run", dir / "val.h5", "cpu");
  // The model is trained on other samples; on the validation sample it must come close to the
  // true conditional density's loss there (and can only beat it by overfitting noise).
  EXPECT_LT(eval["nll"].get<double>(), optimum + 0.1) << "optimum " << optimum;
  EXPECT_GT(eval["nll"].get<double>(), optimum - 0.1) << "optimum " << optimum;
  // bits/dim is the full-density version of the same number.
  EXPECT_NEAR(eval["bits_per_dim"].get<double>(),
              (eval["nll"].get<double>() + 1.5 * std::log(2 * M_PI)) / (3 * std::log(2.0)), 1e-4);
  // The run directory of the contract.
  for (const char* f : {"config.json", "metrics.jsonl", "energy.json", "checkpoints/last.pt", "checkpoints/best.pt"})
    EXPECT_TRUE(fs::exists(fs::path(dir / "run") / f)) << f;
  auto resolved = json::parse(slurp(dir / "run/config.json"));
  EXPECT_EQ(resolved["model"]["in_dim"], 3);
  EXPECT_EQ(resolved["model"]["cond_dim"], 2);
  int train_lines = 0, val_lines = 0;
  std::ifstream in(dir / "run/metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    auto j = json::parse(line);
    if (j["split"] == "train") {
      ++train_lines;
      for (const char* k : {"loss", "nll", "nlogdet", "reference_nll", "lr", "grad_norm", "items_per_s"})
        EXPECT_TRUE(j.contains(k)) << k;
    } else {
      ++val_lines;
      for (const char* k : {"loss", "nll", "bits_per_dim"}) EXPECT_TRUE(j.contains(k)) << k;
    }
  }
  EXPECT_EQ(train_lines, 8);
  EXPECT_EQ(val_lines, 4);
  auto energy = json::parse(slurp(dir / "run/energy.json"));
  EXPECT_GT(energy["wall_seconds"].get<double>(), 0.0);
  EXPECT_GT(energy["cpu_seconds"].get<double>(), 0.0);
}

// data.condition null (model.cond_dim 0): a flow on x alone. The marginal of the Gaussian pairs is
// x ~ N(0, S), S = A A^T + L L^T: the loss approaches 0.5 x^T S^-1 x + 0.5 log det S, and samples
// (net2net-translate --samples with no condition) have covariance S.
TEST(Train, UnconditionalFlowApproachesTheMarginalDensityAndSamplesIt) {
  TempDir dir("train_unconditional");
  make_data(dir);
  auto cfg = write_config(dir, "marginal", {{"batch_size", 256}, {"steps", 800}, {"lr", 0.003}, {"log_every", 100},
                                            {"val_every", 200}, {"checkpoint_every", 400}});
  auto j = json::parse(slurp(cfg));
  j["data"]["condition"] = nullptr;
  std::ofstream(cfg) << j.dump();
  train::TrainOptions o;
  o.config_path = cfg;
  o.run_dir = dir / "run";
  train::run_training(o);
  EXPECT_EQ(json::parse(slurp(dir / "run/config.json"))["model"]["cond_dim"], 0);
  Gaussian g;
  auto [cv, xv] = g.sample(2000, 2);
  const Tensor S = g.A.matmul(g.A.t()) + g.L.matmul(g.L.t());
  const double optimum = (0.5 * (xv.matmul(torch::linalg_inv(S)) * xv).sum(1)).mean().item<double>() +
                         0.5 * std::get<1>(at::linalg_slogdet(S)).item<double>();
  auto eval = train::evaluate_nll(dir / "run", dir / "val.h5", "cpu");
  EXPECT_NEAR(eval["nll"].get<double>(), optimum, 0.1);
  // Samples of the flow alone.
  auto log = dir / "translate.log";
  ASSERT_EQ(wait_exit(spawn({std::string(NET2NET_TOOL_DIR) + "/net2net-translate/net2net-translate", "--checkpoint", dir / "run",
                             "--samples", "4000", "--out", dir / "samples.h5"}, log)), 0) << slurp(log);
  io::EmbeddingReader reader(dir / "samples.h5");
  ASSERT_EQ(reader.rows(), 4000);
  auto rows = reader.read_rows("z", 0, 4000);
  auto z = torch::from_blob(rows.data(), {4000, 3}).to(torch::kFloat64);
  auto centred = z - z.mean(0);
  auto cov = centred.t().matmul(centred) / 3999;
  EXPECT_LT(((cov - S).norm() / S.norm()).item<double>(), 0.15) << cov << S;
  // A condition for an unconditional model is refused.
  ASSERT_EQ(wait_exit(spawn({std::string(NET2NET_TOOL_DIR) + "/net2net-translate/net2net-translate", "--checkpoint", dir / "run",
                             "--labels", "1", "--out", dir / "refused.h5"}, log)), 2);
  EXPECT_NE(slurp(log).find("unconditional"), std::string::npos) << slurp(log);
  // model.cond_dim 0 with a condition dataset named is a config error.
  j["data"]["condition"] = "c";
  j["model"]["cond_dim"] = 0;
  std::ofstream(cfg) << j.dump();
  EXPECT_THROW(train::prepare_config(cfg, {}, false, 0), ConfigError);
}

TEST(Train, ValFractionSplitsTheTrainCache) {
  TempDir dir("train_split");
  make_data(dir, 1000);
  auto cfg = write_config(dir, "split", {{"batch_size", 100}, {"steps", 5}, {"lr", 0.001}, {"log_every", 5}});
  train::TrainOptions o;
  o.config_path = cfg;
  o.overrides = {"data.val=null", "data.val_fraction=0.2"};
  o.run_dir = dir / "run";
  EXPECT_EQ(train::run_training(o)["steps"], 5);
  // 800 training rows, batch 100: 8 steps an epoch.
  EXPECT_NE(slurp(dir / "run/metrics.jsonl").find("\"split\":\"val\""), std::string::npos);
}

TEST(Train, CosineScheduleDecaysTheRateStepByStep) {
  EXPECT_DOUBLE_EQ(train::scheduled_lr(0.5, "constant", 7, 10), 0.5);
  EXPECT_DOUBLE_EQ(train::scheduled_lr(0.5, "cosine", 0, 10), 0.5);
  EXPECT_NEAR(train::scheduled_lr(0.5, "cosine", 5, 10), 0.25, 1e-15);
  EXPECT_NEAR(train::scheduled_lr(0.5, "cosine", 10, 10), 0.0, 1e-15);
  TempDir dir("train_cosine");
  make_data(dir, 1000);
  auto cfg = write_config(dir, "cos", {{"batch_size", 50}, {"steps", 12}, {"lr", 0.004}, {"log_every", 1}, {"lr_schedule", "cosine"}});
  train::TrainOptions o;
  o.config_path = cfg;
  o.run_dir = dir / "run";
  train::run_training(o);
  std::ifstream in(dir / "run/metrics.jsonl");
  int lines = 0;
  for (std::string line; std::getline(in, line);) {
    auto j = json::parse(line);
    if (j["split"] != "train") continue;
    const int64_t k = j["step"].get<int64_t>() - 1;  // the update that produced logged step k + 1
    EXPECT_NEAR(j["lr"].get<double>(), 0.002 * (1 + std::cos(M_PI * k / 12.0)), 1e-12) << line;
    ++lines;
  }
  EXPECT_EQ(lines, 12);
}

// torchrun (Debian's python3-torch ships it) sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
// MASTER_PORT for each worker, as users launch it; the run must equal two ranks started by hand.
TEST(TrainTool, TorchrunLaunchEqualsTwoRanksStartedByHand) {
  // The torchrun of the torch this LibTorch belongs to (tests/CMakeLists.txt): the 1.13 agent's
  // store and a 2.x worker's client do not speak the same protocol.
  const std::string torchrun = NET2NET_TORCHRUN;
  if (torchrun.empty()) {
    if (std::getenv("NET2NET_REQUIRE_TORCHRUN")) FAIL() << "torchrun not found and NET2NET_REQUIRE_TORCHRUN is set";
    GTEST_SKIP() << "no torchrun of this LibTorch's torch (Debian: apt-get install python3-torch)";
  }
  TempDir dir("train_torchrun");
  make_data(dir, 2000);
  auto cfg = write_config(dir, "tr", {{"batch_size", 64}, {"steps", 10}, {"lr", 0.002}, {"log_every", 10},
                                      {"val_every", 1000}, {"checkpoint_every", 1000}});
  std::vector<std::string> base = {kTrain, "--config", cfg, "--threads", "1", "--deterministic", "--log-level", "info"};
  const std::string port = std::to_string(free_port() + 1);
  std::vector<pid_t> pids;
  for (int rank = 0; rank < 2; ++rank) {
    auto a = base;
    a.insert(a.end(), {"--run-dir", dir / "by_hand"});
    pids.push_back(spawn(a, dir / ("rank" + std::to_string(rank) + ".log"),
                         {"RANK=" + std::to_string(rank), "WORLD_SIZE=2", "LOCAL_RANK=" + std::to_string(rank),
                          "MASTER_ADDR=127.0.0.1", "MASTER_PORT=" + port}));
  }
  for (int rank = 0; rank < 2; ++rank)
    ASSERT_EQ(wait_exit(pids[rank]), 0) << slurp(dir / ("rank" + std::to_string(rank) + ".log"));
  // --redirects 2 --tee 2 (stderr to a file and the console): Debian's torchrun 1.13 on Python
  // 3.11 fails with its defaults ("0" no longer parses: Python 3.11's IntFlag iteration).
  std::vector<std::string> launch = {torchrun, "--nnodes", "1", "--nproc_per_node", "2", "--master_port",
                                     std::to_string(free_port() + 2), "--redirects", "2", "--tee", "2",
                                     "--log_dir", dir / "torchrun_logs", "--no_python"};
  launch.insert(launch.end(), base.begin(), base.end());
  launch.insert(launch.end(), {"--run-dir", dir / "torchrun"});
  ASSERT_EQ(wait_exit(spawn(launch, dir / "torchrun.log")), 0) << slurp(dir / "torchrun.log");
  const std::string log = slurp(dir / "torchrun.log");
  EXPECT_NE(log.find("2 rank(s), gloo"), std::string::npos) << log;
  auto a = params_of(dir / "by_hand/checkpoints/last.pt"), b = params_of(dir / "torchrun/checkpoints/last.pt");
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << "parameter " << i;
  EXPECT_EQ(logged_step(dir / "torchrun"), 10);
}

TEST(TrainTool, SigkillThenResumeIsBitIdenticalInDeterministicMode) {
  TempDir dir("train_kill");
  make_data(dir, 4000);
  // A cosine schedule too: the resumed run must recompute the rate from the step alone.
  auto cfg = write_config(dir, "kill", {{"batch_size", 64}, {"steps", 400}, {"lr", 0.002}, {"log_every", 10},
                                        {"val_every", 100}, {"checkpoint_every", 37}, {"lr_schedule", "cosine"}},
                          {{"hidden_dim", 128}});
  auto args = [&](const std::string& run) {
    return std::vector<std::string>{kTrain, "--config", cfg, "--run-dir", run, "--deterministic", "--threads", "1", "--log-level", "warn"};
  };
  ASSERT_EQ(wait_exit(spawn(args(dir / "clean"), dir / "clean.log")), 0) << slurp(dir / "clean.log");
  pid_t pid = spawn(args(dir / "killed"), dir / "killed.log");
  ASSERT_TRUE(wait_for_step(dir / "killed", 130, pid)) << slurp(dir / "killed.log");
  kill(pid, SIGKILL);
  EXPECT_EQ(wait_exit(pid), 128 + SIGKILL);
  ASSERT_LT(logged_step(dir / "killed"), 400);
  auto resume = args(dir / "killed");
  resume.push_back("--resume");
  ASSERT_EQ(wait_exit(spawn(resume, dir / "resume.log")), 0) << slurp(dir / "resume.log");
  auto a = params_of(dir / "clean/checkpoints/last.pt"), b = params_of(dir / "killed/checkpoints/last.pt");
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << "parameter " << i;
  // The metrics of the resumed run hold each step once.
  int lines_400 = 0;
  std::ifstream in(dir / "killed/metrics.jsonl");
  for (std::string line; std::getline(in, line);) lines_400 += json::parse(line)["step"] == 400 && json::parse(line)["split"] == "train";
  EXPECT_EQ(lines_400, 1);
}

TEST(TrainTool, ResumeOnTheWholeFlowKernelsIsBitIdentical) {
  // 16-wide targets (the Gaussian's 3 dimensions and 13 of noise), subnet inputs 8 + 8, hidden 64:
  // widths in whole vectors, so training takes the whole-flow kernels from its second step on.
  TempDir dir("train_fused_resume");
  Gaussian g;
  for (auto [name, n, seed] : {std::tuple{"train.h5", 2000, 1}, std::tuple{"val.h5", 500, 2}}) {
    auto [c, x] = g.sample(n, seed);
    write_pairs(dir / name, c, torch::cat({x, torch::randn({n, 13}, torch::kFloat64)}, 1));
  }
  auto cfg = write_config(dir, "fused", {{"batch_size", 64}, {"steps", 60}, {"lr", 0.002}, {"log_every", 10},
                                         {"val_every", 1000}, {"checkpoint_every", 1000}});
  auto args = [&](const std::string& run, int steps) {
    return std::vector<std::string>{kTrain, "--config", cfg, "--run-dir", run, "--deterministic", "--threads", "2",
                                    "--log-level", "warn", "--set", "train.steps=" + std::to_string(steps)};
  };
  ASSERT_EQ(wait_exit(spawn(args(dir / "clean", 60), dir / "clean.log")), 0) << slurp(dir / "clean.log");
  ASSERT_EQ(wait_exit(spawn(args(dir / "split", 30), dir / "split.log")), 0) << slurp(dir / "split.log");
  auto resume = args(dir / "split", 60);
  resume.push_back("--resume");
  ASSERT_EQ(wait_exit(spawn(resume, dir / "resume.log")), 0) << slurp(dir / "resume.log");
  auto loaded = io::load_flow_checkpoint(dir / "clean/checkpoints/last.pt");
  loaded.model->train();
  auto batch = torch::randn({8, 16});
  EXPECT_TRUE(loaded.model->forward_is_fused(batch, torch::randn({8, 2})));
  auto a = params_of(dir / "clean/checkpoints/last.pt"), b = params_of(dir / "split/checkpoints/last.pt");
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << "parameter " << i;
}

TEST(TrainTool, SignalWritesACheckpointAndExitsFour) {
  TempDir dir("train_term");
  make_data(dir, 4000);
  auto cfg = write_config(dir, "term", {{"batch_size", 64}, {"steps", 100000}, {"lr", 0.001}, {"log_every", 10},
                                        {"checkpoint_every", 100000}, {"val_every", 100000}});
  std::vector<std::string> args = {kTrain, "--config", cfg, "--run-dir", dir / "run", "--threads", "1"};
  for (int sig : {SIGTERM, SIGUSR1, SIGINT}) {
    SCOPED_TRACE(sig);
    auto a = args;
    if (sig != SIGTERM) a.push_back("--resume");
    pid_t pid = spawn(a, dir / "run.log");
    int64_t before = logged_step(dir / "run");
    ASSERT_TRUE(wait_for_step(dir / "run", before + 20, pid)) << slurp(dir / "run.log");
    kill(pid, sig);
    EXPECT_EQ(wait_exit(pid), 4) << slurp(dir / "run.log");
    EXPECT_NE(slurp(dir / "run.log").find("--resume"), std::string::npos);
    torch::optim::Adam adam(params_of(dir / "run/checkpoints/last.pt"), torch::optim::AdamOptions(1e-3));
    auto state = io::load_training_state(dir / "run/checkpoints/last.pt", adam);
    EXPECT_GE(state.step, before + 20);
  }
}

TEST(TrainTool, ADamagedLastCheckpointFallsBackToTheNewestGoodOneAndResumesExactly) {
  TempDir dir("train_corrupt");
  make_data(dir, 1000);
  auto cfg = write_config(dir, "c", {{"batch_size", 100}, {"steps", 30}, {"lr", 0.001}, {"log_every", 5},
                                     {"val_every", 1000}, {"checkpoint_every", 10}});
  auto train = [&](const std::string& run, const std::string& extra) {
    return test::shell("'" + kTrain + "' --config '" + cfg + "' --run-dir '" + run + "' --deterministic --threads 1 " +
                       extra + " 2> '" + (dir / "err.txt") + "'");
  };
  ASSERT_EQ(train(dir / "clean", "--log-level error"), 0) << slurp(dir / "err.txt");
  ASSERT_EQ(train(dir / "run", "--set train.steps=20 --log-level error"), 0) << slurp(dir / "err.txt");
  const fs::path ck = fs::path(dir / "run") / "checkpoints";
  // last.pt (step 20), the previous one kept beside it (step 10), best.pt (step 20): the model
  // alone, from last.pt's snapshot, not a link that would keep an old last.pt alive.
  ASSERT_TRUE(fs::exists(ck / "last.prev.pt"));
  EXPECT_FALSE(fs::equivalent(ck / "last.pt", ck / "best.pt"));
  EXPECT_EQ(io::load_flow_checkpoint(ck / "best.pt").step, -1);
  {
    auto best = params_of(ck / "best.pt"), last = params_of(ck / "last.pt");
    ASSERT_EQ(best.size(), last.size());
    for (size_t i = 0; i < best.size(); ++i) EXPECT_TRUE(torch::equal(best[i], last[i])) << "parameter " << i;
  }
  EXPECT_FALSE(fs::equivalent(ck / "last.pt", ck / "last.prev.pt"));
  test::flip_a_tensor_bit(ck / "last.pt");
  ASSERT_EQ(train(dir / "run", "--resume --log-level warn"), 0) << slurp(dir / "err.txt");
  const std::string err = slurp(dir / "err.txt");
  EXPECT_NE(err.find((ck / "last.pt").string() + "' is corrupt"), std::string::npos) << err;
  EXPECT_NE(err.find("resuming from '" + (ck / "last.prev.pt").string() + "' (step 10)"), std::string::npos) << err;
  EXPECT_TRUE(fs::exists(ck / "last.pt.corrupt")) << "the damaged file is kept for inspection";
  // Ten steps lost, none wrong: the same parameters as the uninterrupted run.
  auto a = params_of(dir / "clean/checkpoints/last.pt"), b = params_of(ck / "last.pt");
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << "parameter " << i;
  // Until the next checkpoint the run directory still says "resume me": the fallback is copied to
  // last.pt at once (a job killed in that window is resumed, not started afresh).
  test::flip_a_tensor_bit(ck / "last.pt");
  auto fallback = io::load_resume_checkpoint(dir / "run", /*set_aside_damaged=*/true);
  EXPECT_GE(fallback.step, 20);
  ASSERT_TRUE(fs::exists(ck / "last.pt"));
  EXPECT_EQ(io::load_flow_checkpoint(ck / "last.pt").step, fallback.step);
  // Nothing good left: exit 3 naming every file tried.
  for (const char* f : {"last.pt", "last.prev.pt", "best.pt"}) fs::resize_file(ck / f, fs::file_size(ck / f) / 3);
  ASSERT_EQ(train(dir / "run", "--resume --set train.steps=40"), 3);
  for (const char* f : {"last.pt", "last.prev.pt", "best.pt"})
    EXPECT_NE(slurp(dir / "err.txt").find((ck / f).string()), std::string::npos) << f << ": " << slurp(dir / "err.txt");
  EXPECT_NE(slurp(dir / "err.txt").find("corrupt or truncated"), std::string::npos) << slurp(dir / "err.txt");
}

TEST(TrainTool, BestIsTheModelAloneAndKeepPreviousDecidesOnLastPrev) {
  TempDir dir("train_ckpt_policy");
  make_data(dir, 1000);
  // lr 0: the validation at step 7 equals that at step 5, so best.pt stays the step-5 file, its own
  // (step 5 is no checkpoint step) and the model alone.
  auto cfg = write_config(dir, "p", {{"batch_size", 100}, {"steps", 7}, {"lr", 0.0}, {"log_every", 1},
                                     {"val_every", 5}, {"checkpoint_every", 2}});
  for (const char* keep : {"never", "always"}) {
    SCOPED_TRACE(keep);
    const std::string run = dir / keep;
    const std::string out = test::shell_output("'" + kTrain + "' --config '" + cfg + "' --run-dir '" + run +
                                               "' --threads 1 --log-level error --json --set train.keep_previous=" + keep);
    const json summary = json::parse(out, nullptr, false);
    ASSERT_TRUE(summary.is_object()) << out;
    const fs::path ck = fs::path(run) / "checkpoints";
    EXPECT_EQ(fs::exists(ck / "last.prev.pt"), std::string(keep) == "always");
    if (std::string(keep) == "always") {
      EXPECT_EQ(io::load_flow_checkpoint(ck / "last.prev.pt").step, 6);
    }
    ASSERT_TRUE(fs::exists(ck / "best.pt"));
    EXPECT_FALSE(fs::equivalent(ck / "best.pt", ck / "last.pt"));
    EXPECT_EQ(io::load_flow_checkpoint(ck / "best.pt").step, -1) << "a model-only checkpoint";
    EXPECT_LT(fs::file_size(ck / "best.pt"), fs::file_size(ck / "last.pt") / 2) << "no optimizer state";
    torch::optim::Adam adam(params_of(ck / "last.pt"), torch::optim::AdamOptions(1e-3));
    EXPECT_EQ(io::load_training_state(ck / "last.pt", adam).step, 7);
    EXPECT_THROW(io::load_training_state(ck / "best.pt", adam), InputError);
    // Where the time went: every part there, none larger than the whole.
    const json& t = summary["timings"];
    double parts = 0;
    for (const char* k : {"setup_s", "steps_s", "validation_s", "images_s", "checkpoint_s", "final_checkpoint_s"}) {
      ASSERT_TRUE(t.contains(k)) << t.dump();
      EXPECT_GE(t[k].get<double>(), 0.0) << k;
      parts += t[k].get<double>();
    }
    EXPECT_LE(parts, t["total_s"].get<double>() * 1.001) << t.dump();
    EXPECT_GT(t["checkpoint_write_s"].get<double>(), 0.0) << t.dump();
    EXPECT_EQ(t["checkpoints"], 3) << "steps 2, 4 and 6; step 7's is the final one";
  }
  // Resumed with never: the last.prev.pt of the earlier part goes (resume would take it over a
  // damaged last.pt, and it is older than the checkpoints now written).
  const fs::path ck = fs::path(dir / "always") / "checkpoints";
  ASSERT_TRUE(fs::exists(ck / "last.prev.pt"));
  ASSERT_EQ(test::shell("'" + kTrain + "' --run-dir '" + (dir / "always") +
                        "' --resume --threads 1 --log-level error --set train.steps=9 --set train.keep_previous=never"),
            0);
  EXPECT_FALSE(fs::exists(ck / "last.prev.pt"));
  EXPECT_EQ(io::load_flow_checkpoint(ck / "last.pt").step, 9);
  // No validation set: best.pt is the final model, still alone (not a link to last.pt), and a
  // resumed run replaces it with its own final model.
  const std::string none = dir / "no_val";
  auto run_without_val = [&](const std::string& extra) {
    return test::shell("'" + kTrain + "' --config '" + cfg + "' --run-dir '" + none +
                       "' --threads 1 --log-level error --set data.val=null --set data.val_fraction=0 " + extra);
  };
  ASSERT_EQ(run_without_val(""), 0);
  const fs::path nk = fs::path(none) / "checkpoints";
  for (int steps : {7, 9}) {
    SCOPED_TRACE(steps);
    if (steps == 9) {
      ASSERT_EQ(run_without_val("--resume --set train.steps=9"), 0);
    }
    ASSERT_TRUE(fs::exists(nk / "best.pt"));
    EXPECT_FALSE(fs::equivalent(nk / "best.pt", nk / "last.pt"));
    EXPECT_EQ(io::load_flow_checkpoint(nk / "best.pt").step, -1);
    EXPECT_EQ(io::load_flow_checkpoint(nk / "last.pt").step, steps);
    auto best = params_of(nk / "best.pt"), last = params_of(nk / "last.pt");
    ASSERT_EQ(best.size(), last.size());
    for (size_t i = 0; i < best.size(); ++i) EXPECT_TRUE(torch::equal(best[i], last[i])) << "parameter " << i;
  }
}

TEST(TrainTool, NonFiniteRowsInACacheAreRefusedUpFrontNamingThem) {
  TempDir dir("train_nan");
  make_data(dir, 100);
  Gaussian g;
  auto [c, x] = g.sample(100, 3);
  x[5][1] = std::nan("");
  x[17][0] = INFINITY;
  x[40][2] = -INFINITY;
  write_pairs(dir / "train.h5", c, x);
  auto cfg = write_config(dir, "n", {{"batch_size", 10}, {"steps", 5}});
  EXPECT_EQ(test::shell("'" + kTrain + "' --config '" + cfg + "' --run-dir '" + (dir / "run") + "' 2> '" +
                        (dir / "err.txt") + "'"),
            2);
  const std::string err = slurp(dir / "err.txt");
  EXPECT_NE(err.find("cache '" + (dir / "train.h5") + "' dataset 'x': 3 rows hold NaN or Inf (rows 5, 17, 40"),
            std::string::npos)
      << err;
  EXPECT_FALSE(fs::exists(fs::path(dir / "run") / "checkpoints/last.pt"));
  // evaluate_nll reads through the same check.
  EXPECT_THROW(train::evaluate_nll(dir / "run", dir / "train.h5", "cpu"), Error);
}

TEST(TrainTool, TenSkippedStepsInARowStopWithACheckpoint) {
  TempDir dir("train_diverge");
  make_data(dir, 1000);
  // Finite data, but a learning rate so large that the first update leaves a model whose outputs
  // overflow: every later step is non-finite and skipped.
  auto cfg = write_config(dir, "d", {{"batch_size", 100}, {"steps", 50}, {"lr", 1e30}, {"log_every", 1},
                                     {"val_every", 1000}, {"checkpoint_every", 1000}});
  EXPECT_EQ(test::shell("'" + kTrain + "' --config '" + cfg + "' --run-dir '" + (dir / "run") + "' --set data.val=null 2> '" +
                        (dir / "err.txt") + "'"),
            1);
  const std::string err = slurp(dir / "err.txt");
  EXPECT_NE(err.find("10 non-finite steps in a row"), std::string::npos) << err;
  EXPECT_NE(err.find("update skipped"), std::string::npos) << err;
  // The diverged state is kept for a look, apart: last.pt must stay the last good one.
  ASSERT_TRUE(fs::exists(fs::path(dir / "run") / "checkpoints/diverged.pt")) << err;
  EXPECT_FALSE(fs::exists(fs::path(dir / "run") / "checkpoints/last.pt")) << err;
  EXPECT_NE(err.find("no checkpoint was written before"), std::string::npos) << err;
  torch::optim::Adam adam(params_of(dir / "run/checkpoints/diverged.pt"), torch::optim::AdamOptions(1e-3));
  EXPECT_EQ(io::load_training_state(dir / "run/checkpoints/diverged.pt", adam).step, logged_step(dir / "run"));
  EXPECT_LT(logged_step(dir / "run"), 50);
}

TEST(TrainTool, ResumeRefusesAnotherModelButExtendsSteps) {
  TempDir dir("train_resume_cfg");
  make_data(dir, 1000);
  auto cfg = write_config(dir, "r", {{"batch_size", 100}, {"steps", 10}, {"lr", 0.001}, {"log_every", 5}});
  ASSERT_EQ(test::shell("'" + kTrain + "' --config '" + cfg + "' --run-dir '" + (dir / "run") + "' --log-level error"), 0);
  EXPECT_EQ(test::shell("'" + kTrain + "' --config '" + cfg + "' --run-dir '" + (dir / "run") +
                        "' --resume --set model.n_flows=5 2> '" + (dir / "err.txt") + "'"),
            2);
  EXPECT_NE(slurp(dir / "err.txt").find("model.n_flows"), std::string::npos) << slurp(dir / "err.txt");
  ASSERT_EQ(test::shell("'" + kTrain + "' --run-dir '" + (dir / "run") + "' --resume --set train.steps=20 --log-level error"), 0);
  EXPECT_EQ(logged_step(dir / "run"), 20);
}

TEST(TrainTool, MissingDatasetExitsTwoNamingIt) {
  TempDir dir("train_missing");
  make_data(dir, 100);
  auto cfg = write_config(dir, "m", {{"steps", 1}});
  EXPECT_EQ(test::shell("'" + kTrain + "' --config '" + cfg + "' --run-dir '" + (dir / "run") +
                        "' --set data.condition=nope 2> '" + (dir / "err.txt") + "'"),
            2);
  EXPECT_NE(slurp(dir / "err.txt").find("'/nope'"), std::string::npos) << slurp(dir / "err.txt");
  EXPECT_NE(slurp(dir / "err.txt").find("data.condition"), std::string::npos) << slurp(dir / "err.txt");
}

TEST(TrainTool, ABatchLargerThanTheDataIsSaidAndTakesAllRows) {
  TempDir dir("train_big_batch");
  make_data(dir, 100);
  auto cfg = write_config(dir, "b", {{"batch_size", 500}, {"steps", 2}, {"log_every", 1}});
  ASSERT_EQ(test::shell("'" + kTrain + "' --config '" + cfg + "' --run-dir '" + (dir / "run") + "' --log-level warn 2> '" +
                        (dir / "err.txt") + "'"),
            0);
  EXPECT_NE(slurp(dir / "err.txt").find("train.batch_size 500 is larger than the 100 training rows"), std::string::npos)
      << slurp(dir / "err.txt");
  EXPECT_EQ(logged_step(dir / "run"), 2);
}

TEST(TrainTool, TwoGlooRanksEqualOneProcessOnTheCombinedBatch) {
  TempDir dir("train_ddp");
  make_data(dir, 2000);
  auto cfg = write_config(dir, "ddp", {{"batch_size", 64}, {"steps", 10}, {"lr", 0.002}, {"log_every", 10},
                                       {"val_every", 1000}, {"checkpoint_every", 1000}});
  std::vector<std::string> base = {kTrain, "--config", cfg, "--threads", "1", "--log-level", "info"};
  auto single = base;
  single.insert(single.end(), {"--run-dir", dir / "single"});
  ASSERT_EQ(wait_exit(spawn(single, dir / "single.log")), 0) << slurp(dir / "single.log");
  const std::string port = std::to_string(free_port());
  std::vector<pid_t> pids;
  for (int rank = 0; rank < 2; ++rank) {
    auto a = base;
    a.insert(a.end(), {"--run-dir", dir / "ddp"});
    pids.push_back(spawn(a, dir / ("rank" + std::to_string(rank) + ".log"),
                         {"RANK=" + std::to_string(rank), "WORLD_SIZE=2", "LOCAL_RANK=" + std::to_string(rank),
                          "MASTER_ADDR=127.0.0.1", "MASTER_PORT=" + port}));
  }
  for (int rank = 0; rank < 2; ++rank)
    ASSERT_EQ(wait_exit(pids[rank]), 0) << slurp(dir / ("rank" + std::to_string(rank) + ".log"));
  EXPECT_NE(slurp(dir / "rank0.log").find("gloo"), std::string::npos);
  auto a = params_of(dir / "single/checkpoints/last.pt"), b = params_of(dir / "ddp/checkpoints/last.pt");
  ASSERT_EQ(a.size(), b.size());
  // Float tolerance for Adam: the two runs sum the batch in a different order, so gradients differ
  // in the last bits; Adam's normalised step turns that into at most a few lr-sized steps on the
  // rare entries whose gradient is pure rounding noise. A wrong all-reduce (each rank on its own
  // half, a missing average) moves nearly every entry.
  int64_t off = 0, total = 0;
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    auto d = (a[i] - b[i]).abs();
    off += (d > 1e-4 + 1e-3 * b[i].abs()).sum().item<int64_t>();
    total += d.numel();
    worst = std::max(worst, d.max().item<double>());
  }
  EXPECT_LT(double(off) / total, 0.005) << off << " of " << total << " entries differ";
  EXPECT_LT(worst, 2 * 0.002 * 10) << "more than a few Adam steps apart";
  // And they did train: the parameters moved away from the initialisation.
  auto cfg_json = json::parse(slurp(cfg));
  EXPECT_EQ(json::parse(slurp(dir / "ddp/config.json"))["train"]["steps"], 10);
  // A broken all-reduce is caught: one rank alone on its half of each batch is far off.
  auto half = base;
  half.insert(half.end(), {"--run-dir", dir / "half", "--set", "train.batch_size=32"});
  ASSERT_EQ(wait_exit(spawn(half, dir / "half.log")), 0) << slurp(dir / "half.log");
  auto h = params_of(dir / "half/checkpoints/last.pt");
  int64_t moved = 0, all = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    moved += ((a[i] - h[i]).abs() > 1e-4 + 1e-3 * a[i].abs()).sum().item<int64_t>();
    all += a[i].numel();
  }
  EXPECT_GT(double(moved) / all, 0.05) << "the tolerance above would not catch a wrong all-reduce";
}

// train.accumulate: A batches' gradients summed into one step equal that step on the A batches
// together. In float64 (train.precision fp64) the two differ only by summation order, ~1e-16
// relative, so the check is tight; the model has no batch statistics (embedder norm none).
TEST(TrainTool, AccumulatedBatchesEqualOneStepOnTheirConcatenationInFloat64) {
  TempDir dir("train_accumulate");
  make_data(dir, 2000);
  const json train = {{"steps", 6}, {"lr", 0.002}, {"log_every", 1}, {"val_every", 1000}, {"checkpoint_every", 1000},
                      {"precision", "fp64"}};
  auto run_with = [&](const std::string& name, int64_t batch, int64_t accumulate) {
    json t = train;
    t["batch_size"] = batch, t["accumulate"] = accumulate;
    auto cfg = write_config(dir, name, t);
    const std::string log = dir / (name + ".log");
    EXPECT_EQ(wait_exit(spawn({kTrain, "--config", cfg, "--run-dir", dir / name, "--threads", "1", "--log-level", "error"}, log)), 0)
        << slurp(log);
    return params_of(dir / (name + "/checkpoints/last.pt"));
  };
  auto accumulated = run_with("accumulated", 32, 2), together = run_with("together", 64, 1),
       half = run_with("half", 32, 1);
  ASSERT_EQ(accumulated.size(), together.size());
  double worst = 0, scale = 0, half_off = 0;
  for (size_t i = 0; i < accumulated.size(); ++i) {
    ASSERT_EQ(accumulated[i].scalar_type(), torch::kFloat64);
    worst = std::max(worst, (accumulated[i] - together[i]).abs().max().item<double>());
    scale = std::max(scale, together[i].abs().max().item<double>());
    half_off = std::max(half_off, (half[i] - together[i]).abs().max().item<double>());
  }
  EXPECT_LT(worst, 1e-10 * scale) << "6 accumulated steps are not one step on the concatenated batches";
  EXPECT_GT(half_off, 1e-4 * scale) << "the check would not tell one batch from two";
  // The logged loss and gradient norm of each step are those of the concatenated batch.
  auto lines = [&](const std::string& name) {
    std::vector<json> out;
    std::ifstream in(dir / (name + "/metrics.jsonl"));
    for (std::string line; std::getline(in, line);) {
      auto j = json::parse(line);
      if (j["split"] == "train") out.push_back(j);
    }
    return out;
  };
  auto a = lines("accumulated"), b = lines("together");
  ASSERT_EQ(a.size(), 6u);
  ASSERT_EQ(b.size(), 6u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_NEAR(a[i]["loss"].get<double>(), b[i]["loss"].get<double>(), 1e-9) << "step " << i + 1;
    EXPECT_NEAR(a[i]["grad_norm"].get<double>(), b[i]["grad_norm"].get<double>(), 1e-9 * b[i]["grad_norm"].get<double>());
  }
  // The reference's learning-rate rule counts the accumulated batches.
  auto cfg = write_config(dir, "lr", {{"batch_size", 16}, {"accumulate", 4}, {"base_lr", 1e-4}});
  ASSERT_EQ(wait_exit(spawn({kTrain, "--config", cfg, "--dry-run", "--log-level", "error"}, dir / "dry.json")), 0)
      << slurp(dir / "dry.json");
  EXPECT_DOUBLE_EQ(json::parse(slurp(dir / "dry.json"))["learning_rate"]["lr"].get<double>(), 4 * 16 * 1e-4);
}

// --init-from: a new run takes another run's tensors by name (optimizer, RNG and step afresh);
// --init-ignore keeps tensors initialised by prefix (the original's ignore_keys) or glob.
TEST(TrainTool, InitFromTakesTheTensorsByNameAndKeepsTheIgnoredOnesInitialised) {
  TempDir dir("train_init_from");
  make_data(dir, 500);
  const json train = {{"batch_size", 50}, {"lr", 0.002}, {"log_every", 1}, {"val_every", 1000}, {"checkpoint_every", 1000}};
  auto train_run = [&](const std::string& name, int64_t steps, std::vector<std::string> extra, json model = json::object()) {
    json t = train;
    t["steps"] = steps;
    std::vector<std::string> args = {kTrain, "--config", write_config(dir, name, t, model), "--run-dir", dir / name,
                                     "--threads", "1", "--log-level", "error"};
    args.insert(args.end(), extra.begin(), extra.end());
    return wait_exit(spawn(args, dir / (name + ".log")));
  };
  auto tensors = [&](const std::string& name) {
    std::map<std::string, Tensor> out;
    auto m = io::load_flow_checkpoint(dir / (name + "/checkpoints/last.pt")).model;
    for (const auto& p : m->named_parameters()) out[p.key()] = p.value();
    for (const auto& b : m->named_buffers()) out[b.key()] = b.value();
    return out;
  };
  const std::string source = dir / "a/checkpoints/last.pt";
  ASSERT_EQ(train_run("a", 20, {}), 0) << slurp(dir / "a.log");
  // Zero steps: the run's checkpoint is what it started from.
  ASSERT_EQ(train_run("all", 0, {"--init-from", source, "--set", "train.seed=99"}), 0) << slurp(dir / "all.log");
  ASSERT_EQ(train_run("noembedder", 0, {"--init-from", source, "--init-ignore", "embedder", "--set", "train.seed=99"}), 0)
      << slurp(dir / "noembedder.log");
  ASSERT_EQ(train_run("fresh", 0, {"--set", "train.seed=99"}), 0) << slurp(dir / "fresh.log");
  auto a = tensors("a"), all = tensors("all"), noembedder = tensors("noembedder"), fresh = tensors("fresh");
  ASSERT_EQ(a.size(), all.size());
  int64_t embedder = 0;
  for (const auto& [name, t] : a) {
    EXPECT_TRUE(torch::equal(all[name], t)) << name << " was not taken from the checkpoint";
    if (name.rfind("embedder", 0) == 0) {
      ++embedder;
      EXPECT_TRUE(torch::equal(noembedder[name], fresh[name])) << name << " is not the new run's initialisation";
      EXPECT_FALSE(torch::equal(noembedder[name], t)) << name;
    } else {
      EXPECT_TRUE(torch::equal(noembedder[name], t)) << name;
    }
  }
  EXPECT_GT(embedder, 0);
  // Training on from there: a new optimizer and step count, the config as given.
  ASSERT_EQ(train_run("more", 3, {"--init-from", dir / "a"}), 0) << slurp(dir / "more.log");
  EXPECT_EQ(logged_step(dir / "more"), 3);
  auto config = json::parse(slurp(dir / "more/config.json"));
  EXPECT_EQ(config["train"]["init_from"], dir / "a");
  // Another architecture: the tensors of other shapes are named, unless ignored.
  const json wider = {{"hidden_dim", 32}};
  EXPECT_EQ(train_run("wider", 0, {"--init-from", source}, wider), 2);
  EXPECT_NE(slurp(dir / "wider.log").find("--init-ignore"), std::string::npos) << slurp(dir / "wider.log");
  EXPECT_NE(slurp(dir / "wider.log").find("block0.coupling.s0.linear0.bias' is [64] there but [32]"), std::string::npos)
      << slurp(dir / "wider.log");
  EXPECT_EQ(train_run("wider2", 0, {"--init-from", source, "--init-ignore", "block*.coupling*", "--force"}, wider), 0)
      << slurp(dir / "wider2.log");
  EXPECT_EQ(train_run("resume", 0, {"--init-from", source, "--resume"}), 2);
  // --force in the folder the warm start reads from would delete its source first.
  EXPECT_EQ(train_run("a", 0, {"--init-from", dir / "a", "--force"}), 2);
  EXPECT_TRUE(fs::exists(source));
}

TEST(WarmStart, IgnorePatternsArePrefixesOrGlobs) {
  EXPECT_TRUE(train::ignored_by("embedder.linear0.weight", {"embedder"}));
  EXPECT_TRUE(train::ignored_by("block12.actnorm.loc", {"block1*"}));
  EXPECT_FALSE(train::ignored_by("block2.actnorm.loc", {"block1*"}));
  EXPECT_TRUE(train::ignored_by("block2.actnorm.loc", {"x", "block*.actnorm.*"}));
  EXPECT_FALSE(train::ignored_by("block2.coupling.st0.w", {"block*.actnorm.*", ""}));
}

// Images during training: grids at steps 1, 2, 4, ... then every train.image_every and at the last
// step (where the target expert decodes), a loss plot; the run's parameters do not depend on them.
TEST(TrainTool, ImageGridsAtPowersOfTwoThenEveryNAndALossPlotLeaveTheRunUnchanged) {
  TempDir dir("train_images");
  make_data(dir, 500);
  torch::jit::Module dec("Decoder");  // z [N, 3] -> images [N, 1, 1, 3] in [-1, 1]
  dec.define("def forward(self, z):\n  return z\ndef decode(self, z):\n  return z.reshape([-1, 1, 1, 3]).tanh()\n");
  dec.save(dir / "decoder.pt");
  auto train_run = [&](const std::string& name, int64_t image_every, bool decoder) {
    auto cfg = write_config(dir, name, {{"batch_size", 50}, {"steps", 9}, {"lr", 0.002}, {"log_every", 1}, {"val_every", 4},
                                        {"checkpoint_every", 1000}, {"image_every", image_every}, {"image_items", 5},
                                        {"image_samples", 3}});
    auto j = json::parse(slurp(cfg));
    if (decoder) j["data"]["target_expert"] = "ts:" + dir / "decoder.pt";
    std::ofstream(cfg) << j.dump();
    const std::string log = dir / (name + ".log");
    EXPECT_EQ(wait_exit(spawn({kTrain, "--config", cfg, "--run-dir", dir / name, "--threads", "1", "--deterministic"}, log)), 0)
        << slurp(log);
  };
  train_run("images", 4, true);
  train_run("none", 0, true);
  train_run("nodecoder", 4, false);
  const fs::path images = fs::path(dir / "images") / "images";
  for (int step : {1, 2, 4, 8, 9}) {
    char name[32];
    std::snprintf(name, sizeof name, "step_%07d.png", step);
    EXPECT_TRUE(fs::exists(images / name)) << name;
  }
  for (int step : {3, 5, 6, 7}) EXPECT_FALSE(fs::exists(images / ("step_000000" + std::to_string(step) + ".png")));
  // A grid: targets, 3 samples, transfer = 5 rows of 1-pixel-high images with 2-pixel gaps.
  std::ifstream png(images / "step_0000009.png", std::ios::binary);
  unsigned char h[24] = {};
  png.read(reinterpret_cast<char*>(h), 24);
  EXPECT_EQ((h[20] << 24) | (h[21] << 16) | (h[22] << 8) | h[23], 5 * (1 + 2) + 2);
  EXPECT_TRUE(fs::exists(images / "loss.png"));
  EXPECT_FALSE(fs::exists(fs::path(dir / "none") / "images"));
  EXPECT_TRUE(fs::exists(fs::path(dir / "nodecoder") / "images" / "loss.png"));
  EXPECT_FALSE(fs::exists(fs::path(dir / "nodecoder") / "images" / "step_0000001.png"));
  auto a = params_of(dir / "images/checkpoints/last.pt"), b = params_of(dir / "none/checkpoints/last.pt");
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << "parameter " << i;
  // A decoder that returns no images turns the grids off with a warning; the job goes on.
  torch::jit::Module flat("Decoder");
  flat.define("def forward(self, z):\n  return z\ndef decode(self, z):\n  return z\n");
  flat.save(dir / "decoder.pt");
  train_run("baddecoder", 4, true);
  EXPECT_NE(slurp(dir / "baddecoder.log").find("no more grids"), std::string::npos) << slurp(dir / "baddecoder.log");
  EXPECT_TRUE(fs::exists(fs::path(dir / "baddecoder") / "checkpoints" / "last.pt"));
}

TEST(Distributed, RendezvousFromTorchrunAndSlurmVariables) {
  auto t = train::detect_distributed({{"RANK", "3"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "1"}, {"MASTER_ADDR", "n1"}, {"MASTER_PORT", "1234"}});
  EXPECT_EQ(t.launcher, "torchrun");
  EXPECT_EQ(t.rank, 3);
  EXPECT_EQ(t.world_size, 8);
  EXPECT_EQ(t.local_rank, 1);
  EXPECT_EQ(t.master_addr, "n1");
  EXPECT_EQ(t.master_port, 1234);
  EXPECT_FALSE(t.agent_store);
  auto agent = train::detect_distributed({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"TORCHELASTIC_USE_AGENT_STORE", "True"},
                                          {"TORCHELASTIC_RESTART_COUNT", "2"}});
  EXPECT_TRUE(agent.agent_store);
  EXPECT_EQ(agent.restart_count, 2);
  auto s = train::detect_distributed({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "6"}, {"SLURM_LOCALID", "2"},
                                      {"SLURM_JOB_NODELIST", "gpu[07-09,12],cpu3"}});
  EXPECT_EQ(s.launcher, "slurm");
  EXPECT_EQ(s.rank, 5);
  EXPECT_EQ(s.world_size, 6);
  EXPECT_EQ(s.local_rank, 2);
  EXPECT_EQ(s.master_addr, "gpu07");
  EXPECT_EQ(s.master_port, 29500);
  EXPECT_EQ(train::first_slurm_host("node1"), "node1");
  EXPECT_EQ(train::first_slurm_host("a[3,5],b"), "a3");
  EXPECT_EQ(train::detect_distributed({{"X", "1"}}).world_size, 1);
  EXPECT_THROW(train::detect_distributed({{"RANK", "2"}, {"WORLD_SIZE", "2"}}), UsageError);
  EXPECT_THROW(train::detect_distributed({{"RANK", "x"}, {"WORLD_SIZE", "2"}}), UsageError);
}

TEST(Energy, ReadsRaplCountersWithWrapAroundAndReportsUnreadableOnes) {
  TempDir dir("rapl");
  fs::create_directories(dir / "intel-rapl:0");
  fs::create_directories(dir / "intel-rapl:0:0");  // a subdomain: not counted twice
  std::ofstream(dir / "intel-rapl:0/name") << "package-0\n";
  std::ofstream(dir / "intel-rapl:0/max_energy_range_uj") << "1000000\n";
  std::ofstream(dir / "intel-rapl:0/energy_uj") << "900000\n";
  std::ofstream(dir / "intel-rapl:0:0/energy_uj") << "5\n";
  train::EnergyMeter meter(dir.str());
  std::ofstream(dir / "intel-rapl:0/energy_uj", std::ios::trunc) << "950000\n";
  meter.poll();
  std::ofstream(dir / "intel-rapl:0/energy_uj", std::ios::trunc) << "150000\n";  // wrapped
  auto r = meter.record(json{{"cpu_joules", 10.0}, {"wall_seconds", 100.0}, {"parts", 1}});
  EXPECT_TRUE(r["cpu_energy"]["measured"].get<bool>());
  EXPECT_NEAR(r["cpu_joules"].get<double>(), 10.0 + 0.05 + 0.2, 1e-9);
  EXPECT_GE(r["wall_seconds"].get<double>(), 100.0);
  EXPECT_EQ(r["parts"], 2);
  train::EnergyMeter none((dir / "nothing").c_str());
  auto n = none.record();
  EXPECT_FALSE(n["cpu_energy"]["measured"].get<bool>());
  EXPECT_NE(n["cpu_energy"]["note"].get<std::string>().find("no RAPL"), std::string::npos);
  EXPECT_FALSE(n["gpu_energy"]["note"].get<std::string>().empty());
}
