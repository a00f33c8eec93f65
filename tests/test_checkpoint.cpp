// Checkpoints: config + state in one file; a fresh process rebuilds a bit-identical model,
// permutations and ActNorm flags included; corrupt files give clear errors.
#include <H5Cpp.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "net2net/config/cinn_config.h"
#include "net2net/core/error.h"
#include "net2net/io/checkpoint.h"
#include "net2net/kernels/fused_adam.h"
#include "test_util.h"

using namespace net2net;
using namespace net2net::inn;
namespace fs = std::filesystem;
using nlohmann::json;
using torch::Tensor;

namespace {

json test_config(int64_t in_dim = 7) {
  json user = {{"data", {{"train", "t.h5"}, {"condition", "c"}, {"target", "z"}}},
               {"model",
                {{"in_dim", in_dim},
                 {"cond_dim", 3},
                 {"embedding_dim", 4},
                 {"n_flows", 3},
                 {"hidden_dim", 16},
                 {"hidden_depth", 1},
                 {"conditioning", "sequential"},
                 {"embedder", {{"hidden_dim", 8}, {"depth", 1}, {"norm", "batchnorm"}}}}}};
  return config::resolve_config(user, {}, "test");
}

fs::path temp_dir(const std::string& name) {
  auto dir = fs::temp_directory_path() / ("net2net_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// A trained-looking model: ActNorm initialised, BatchNorm statistics moved, and one
// permutation replaced so that a loader that regenerated permutations from the config would
// be caught.
ConditionalFlow prepared_model(const json& cfg) {
  auto model = build_flow(config::flow_config_from_json(cfg), 3);
  model->train();
  torch::manual_seed(4);
  {
    torch::NoGradGuard g;
    model->forward(torch::randn({32, 7}) * 2 + 1, torch::randn({32, 3}));
    auto& idx = model->blocks()[1]->shuffle->forward_index;
    idx.copy_(idx.flip(0));
    model->blocks()[1]->shuffle->backward_index.copy_(torch::argsort(idx));
  }
  model->eval();
  return model;
}

int run_self(const std::string& filter, const std::string& env_dir) {
  std::string exe = fs::read_symlink("/proc/self/exe").string();
  std::string cmd = "NET2NET_CHILD_DIR='" + env_dir + "' '" + exe + "' --gtest_filter=" + filter + " > '" + env_dir +
                    "/child.log' 2>&1";
  int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

TEST(Checkpoint, HoldsConfigAndStateAndRebuildsTheModel) {
  auto dir = temp_dir("ckpt");
  auto cfg = test_config();
  auto model = prepared_model(cfg);
  auto path = (dir / "model.pt").string();
  io::save_flow_checkpoint(path, cfg, model);
  auto loaded = io::load_flow_checkpoint(path);
  EXPECT_EQ(loaded.config, cfg);
  EXPECT_FALSE(loaded.model->is_training());
  EXPECT_TRUE(torch::equal(loaded.model->blocks()[1]->shuffle->forward_index, model->blocks()[1]->shuffle->forward_index));
  for (const auto& b : loaded.model->blocks()) EXPECT_TRUE(b->norm->initialized());
  torch::manual_seed(8);
  auto x = torch::randn({10, 7}), c = torch::randn({10, 3});
  torch::NoGradGuard g;
  auto a = model->forward(x, c), b = loaded.model->forward(x, c);
  EXPECT_TRUE(torch::equal(a.v, b.v));
  EXPECT_TRUE(torch::equal(a.logdet, b.logdet));
  EXPECT_TRUE(torch::equal(model->inverse(x, c), loaded.model->inverse(x, c)));
  fs::remove_all(dir);
}

TEST(Checkpoint, OptimizerStateOfAnotherLayoutIsRefusedOnResume) {
  auto dir = temp_dir("ckpt_layout");
  auto cfg = test_config(7);
  auto model = prepared_model(cfg);
  torch::optim::Adam adam(model->parameters(), torch::optim::AdamOptions(1e-3));
  auto x = torch::randn({10, 7}), c = torch::randn({10, 3});
  nll_loss(model->forward(x, c), 1.0 / 10).loss.backward();
  adam.step();
  auto path = (dir / "last.pt").string();
  io::TrainingState state;
  state.step = 1;
  io::save_training_checkpoint(path, cfg, model, adam, state);
  // Same module tree and tensor count, other shapes: its Adam moments must not be taken.
  auto other_cfg = cfg;
  other_cfg["model"]["hidden_dim"] = 24;
  auto other = prepared_model(other_cfg);
  torch::optim::Adam other_adam(other->parameters(), torch::optim::AdamOptions(1e-3));
  try {
    io::load_training_state(path, other_adam);
    FAIL() << "loaded optimizer state of another layout";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("another parameter layout"), std::string::npos) << e.what();
  }
  EXPECT_EQ(io::load_training_state(path, adam).step, 1);  // its own layout still loads
  fs::remove_all(dir);
}

TEST(Checkpoint, Float64ModelsStayFloat64) {
  auto dir = temp_dir("ckpt64");
  auto cfg = test_config();
  auto model = prepared_model(cfg);
  convert_floating(*model, torch::kFloat64);
  io::save_flow_checkpoint((dir / "m.pt").string(), cfg, model);
  auto loaded = io::load_flow_checkpoint((dir / "m.pt").string());
  for (const auto& p : loaded.model->parameters()) EXPECT_EQ(p.scalar_type(), torch::kFloat64);
  fs::remove_all(dir);
}

TEST(Checkpoint, RunDirectoryPrefersBestThenLast) {
  auto dir = temp_dir("rundir");
  auto cfg = test_config();
  auto model = prepared_model(cfg);
  EXPECT_THROW(io::resolve_checkpoint_path(dir.string()), IoError);
  io::save_flow_checkpoint((dir / "checkpoints/last.pt").string(), cfg, model);
  EXPECT_EQ(io::resolve_checkpoint_path(dir.string()), (dir / "checkpoints/last.pt").string());
  io::save_flow_checkpoint((dir / "checkpoints/best.pt").string(), cfg, model);
  EXPECT_EQ(io::resolve_checkpoint_path(dir.string()), (dir / "checkpoints/best.pt").string());
  EXPECT_NO_THROW(io::load_flow_checkpoint(dir.string()));
  fs::remove_all(dir);
}

TEST(Checkpoint, CorruptTruncatedOrForeignFilesGiveClearErrors) {
  auto dir = temp_dir("corrupt");
  auto cfg = test_config();
  auto model = prepared_model(cfg);
  auto good = (dir / "good.pt").string();
  io::save_flow_checkpoint(good, cfg, model);
  auto size = fs::file_size(good);

  auto truncated = (dir / "truncated.pt").string();
  fs::copy_file(good, truncated);
  fs::resize_file(truncated, size / 2);
  try {
    io::load_flow_checkpoint(truncated);
    FAIL() << "truncated checkpoint loaded";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(truncated), std::string::npos) << e.what();
  }

  auto garbage = (dir / "garbage.pt").string();
  std::ofstream(garbage) << "not a checkpoint at all";
  EXPECT_THROW(io::load_flow_checkpoint(garbage), InputError);

  auto foreign = (dir / "foreign.pt").string();
  torch::save(torch::ones({3}), foreign);
  try {
    io::load_flow_checkpoint(foreign);
    FAIL() << "foreign archive loaded";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("not a net2net checkpoint"), std::string::npos) << e.what();
  }

  EXPECT_THROW(io::load_flow_checkpoint((dir / "missing.pt").string()), IoError);
  // The good file is untouched by all of this.
  EXPECT_NO_THROW(io::load_flow_checkpoint(good));
  EXPECT_EQ(fs::file_size(good), size);
  fs::remove_all(dir);
}

TEST(Checkpoint, AFlippedBitInATensorIsCaughtByTheContentChecksum) {
  auto dir = temp_dir("checksum");
  auto cfg = test_config();
  auto model = prepared_model(cfg);
  auto good = (dir / "good.pt").string(), bad = (dir / "bad.pt").string();
  io::save_flow_checkpoint(good, cfg, model);
  fs::copy_file(good, bad);
  test::flip_a_tensor_bit(bad);
  // LibTorch alone loads the damaged file without a word: why the checksum exists.
  torch::serialize::InputArchive raw;
  EXPECT_NO_THROW(raw.load_from(bad));
  try {
    io::load_flow_checkpoint(bad);
    FAIL() << "a damaged checkpoint loaded";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("'" + bad + "' is corrupt"), std::string::npos) << e.what();
  }
  // The good one verifies, records a crc32, and a second save of the same model records the same.
  EXPECT_NO_THROW(io::load_flow_checkpoint(good));
  auto recorded = [](const std::string& path) {
    torch::serialize::InputArchive a;
    a.load_from(path);
    c10::IValue v;
    EXPECT_TRUE(a.try_read("checksum", v)) << path;
    return v.isString() ? v.toStringRef() : std::string();
  };
  EXPECT_EQ(recorded(good).rfind("crc32:", 0), 0u) << recorded(good);
  io::save_flow_checkpoint((dir / "again.pt").string(), cfg, model);
  EXPECT_EQ(recorded((dir / "again.pt").string()), recorded(good));
  // The config is covered too: the same model saved with another (valid) config differs.
  auto other = cfg;
  other["name"] = "renamed";
  io::save_flow_checkpoint((dir / "other.pt").string(), other, model);
  EXPECT_NE(recorded((dir / "other.pt").string()), recorded(good));
  fs::remove_all(dir);
}

namespace {
// What a hand-made (or older) checkpoint may hold: no checksum, any state.
std::string write_unchecked(const fs::path& path, const json& cfg, ConditionalFlow& model) {
  torch::serialize::OutputArchive archive, model_archive;
  archive.write("format", c10::IValue(std::string(io::kCheckpointFormat)));
  archive.write("version", c10::IValue(io::kCheckpointVersion));
  archive.write("config", c10::IValue(cfg.dump()));
  archive.write("dtype", c10::IValue(std::string("float32")));
  model->save(model_archive);
  archive.write("model", model_archive);
  archive.save_to(path.string());
  return path.string();
}
}  // namespace

TEST(Checkpoint, CheckpointsWrittenBeforeChecksumsStillLoad) {
  auto dir = temp_dir("no_checksum");
  auto cfg = test_config();
  auto model = prepared_model(cfg);
  // What an older net2net wrote: the same entries, no checksum.
  auto path = write_unchecked(dir / "old.pt", cfg, model);
  auto loaded = io::load_flow_checkpoint(path);
  auto a = model->parameters(), b = loaded.model->parameters();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << i;
  EXPECT_EQ(loaded.step, -1);
  fs::remove_all(dir);
}

TEST(Checkpoint, APermutationThatIsNotOneIsRefusedNotIndexedWith) {
  // Found by fuzzing: an index of 10^12 in backward_index crashed net2net-translate (SIGSEGV in
  // the fused inverse, which indexes with the buffers unchecked).
  auto dir = temp_dir("bad_perm");
  auto cfg = test_config();
  for (int variant = 0; variant < 3; ++variant) {
    auto model = prepared_model(cfg);
    {
      torch::NoGradGuard g;
      auto& shuffle = model->blocks()[2]->shuffle;
      if (variant == 0) shuffle->backward_index[3] = int64_t(1000000000000);
      if (variant == 1) shuffle->forward_index[0] = shuffle->forward_index[1].item<int64_t>();  // a repeat
      if (variant == 2) shuffle->backward_index.copy_(shuffle->forward_index);  // not its inverse
    }
    auto path = write_unchecked(dir / ("perm" + std::to_string(variant) + ".pt"), cfg, model);
    try {
      io::load_flow_checkpoint(path);
      FAIL() << "variant " << variant << " loaded";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("block 2's permutation"), std::string::npos) << e.what();
    }
  }
  // A config that the key table refuses is named as the checkpoint's, not a LibTorch error.
  auto model = prepared_model(cfg);
  auto bad_cfg = cfg;
  bad_cfg["model"]["n_flows"] = -2;
  try {
    io::load_flow_checkpoint(write_unchecked(dir / "cfg.pt", bad_cfg, model));
    FAIL() << "a config with n_flows -2 loaded";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("model.n_flows"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

// Parent: saves a model, its inputs and its outputs; a fresh process loads the checkpoint and
// must reproduce the outputs bit for bit.
TEST(Checkpoint, FreshProcessReproducesOutputsBitForBit) {
  if (std::getenv("NET2NET_CHILD_DIR")) GTEST_SKIP() << "child run";
  auto dir = temp_dir("fresh");
  auto cfg = test_config();
  auto model = prepared_model(cfg);
  io::save_flow_checkpoint((dir / "model.pt").string(), cfg, model);
  torch::manual_seed(10);
  auto x = torch::randn({16, 7}), c = torch::randn({16, 3}), v = torch::randn({16, 7});
  torch::NoGradGuard g;
  auto out = model->forward(x, c);
  auto inv = model->inverse(v, c);
  torch::save(std::vector<Tensor>{x, c, v, out.v, out.logdet, inv}, (dir / "tensors.pt").string());
  int rc = run_self("CheckpointChild.*", dir.string());
  std::ifstream log(dir / "child.log");
  std::string text((std::istreambuf_iterator<char>(log)), {});
  EXPECT_EQ(rc, 0) << text;
  EXPECT_NE(text.find("[  PASSED  ] 1 test"), std::string::npos) << text;
  fs::remove_all(dir);
}

TEST(BackgroundWriter, RunsJobsInOrderAndRethrowsAFailureOnWait) {
  io::BackgroundWriter writer;
  std::vector<int> done;
  writer.submit([&done] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    done.push_back(1);
  });
  writer.submit([&done] { done.push_back(2); });  // starts after the first has finished
  writer.wait();
  EXPECT_EQ(done, (std::vector<int>{1, 2}));
  writer.submit([] { throw IoError("cannot write checkpoint 'x.pt': disk full"); });
  try {
    writer.wait();
    FAIL() << "the job's error must surface";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("x.pt"), std::string::npos);
  }
  EXPECT_NO_THROW(writer.wait());  // reported once
  EXPECT_GE(writer.busy_seconds(), 0.05);
}

TEST(Checkpoint, ASnapshotWritesTheStateAtItsStepWhateverTrainingDoesAfter) {
  // A snapshot written later equals a checkpoint saved at once, tensor by tensor (model and Adam
  // state), although the model and the optimizer go on (a step, in place) before it is written.
  test::TempDir dir("ckpt_snapshot");
  auto cfg = test_config();
  auto model = build_flow(config::flow_config_from_json(cfg), 1);
  model->train();
  torch::optim::Adam adam(model->parameters(), torch::optim::AdamOptions(1e-2).amsgrad(true));
  auto train_step = [&] {
    adam.zero_grad();
    auto [v, logdet] = model->forward(torch::randn({16, 7}), torch::randn({16, 3}));
    (0.5 * v.pow(2).sum(1) - logdet).mean().backward();
    adam.step();
  };
  train_step();
  io::TrainingState st;
  st.step = 1;
  st.rng_state = torch::randint(0, 255, {16}, torch::kUInt8);
  st.extra = {{"threads", 2}, {"energy", {{"wall_seconds", 1.5}}}};
  io::save_training_checkpoint(dir / "now.pt", cfg, model, adam, st);
  auto snapshot = io::snapshot_training_checkpoint(cfg, model, adam, st);
  train_step();  // changes the parameters and the Adam state in place
  io::write_snapshot(dir / "later.pt", *snapshot);
  auto now = io::load_flow_checkpoint(dir / "now.pt"), later = io::load_flow_checkpoint(dir / "later.pt");
  auto a = now.model->parameters(), b = later.model->parameters(), live = model->parameters();
  ASSERT_EQ(a.size(), b.size());
  bool moved = false;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(torch::equal(a[i], b[i])) << "parameter " << i;
    moved = moved || !torch::equal(a[i], live[i]);
  }
  EXPECT_TRUE(moved) << "the second step must have changed the model";
  auto buffers_a = now.model->buffers(), buffers_b = later.model->buffers();
  for (size_t i = 0; i < buffers_a.size(); ++i) EXPECT_TRUE(torch::equal(buffers_a[i], buffers_b[i])) << "buffer " << i;
  torch::optim::Adam adam_a(now.model->parameters(), torch::optim::AdamOptions(1e-2).amsgrad(true));
  torch::optim::Adam adam_b(later.model->parameters(), torch::optim::AdamOptions(1e-2).amsgrad(true));
  EXPECT_EQ(io::load_training_state(dir / "now.pt", adam_a).step, 1);
  const auto state_b = io::load_training_state(dir / "later.pt", adam_b);
  EXPECT_EQ(state_b.step, 1);
  EXPECT_TRUE(torch::equal(state_b.rng_state, st.rng_state));
  EXPECT_EQ(state_b.extra, st.extra);
  for (size_t i = 0; i < a.size(); ++i) {
    auto* sa = kernels::adam_state(adam_a, now.model->parameters()[i]);
    auto* sb = kernels::adam_state(adam_b, later.model->parameters()[i]);
    ASSERT_TRUE(sa && sb) << "parameter " << i;
    EXPECT_TRUE(torch::equal(sa->exp_avg(), sb->exp_avg())) << i;
    EXPECT_TRUE(torch::equal(sa->exp_avg_sq(), sb->exp_avg_sq())) << i;
    EXPECT_TRUE(torch::equal(sa->max_exp_avg_sq(), sb->max_exp_avg_sq())) << i;
  }
  // Its model part (best.pt beside last.pt), written after the whole: the model at the step alone,
  // a model checkpoint with a checksum of its own, every tensor as in the whole.
  io::write_snapshot(dir / "part.pt", *io::model_part(*snapshot));
  auto part = io::load_flow_checkpoint(dir / "part.pt");
  EXPECT_EQ(part.step, -1);
  EXPECT_EQ(part.config, now.config);
  EXPECT_THROW(io::load_training_state(dir / "part.pt", adam_b), InputError);
  auto c = part.model->parameters();
  ASSERT_EQ(c.size(), a.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], c[i])) << "parameter " << i;
  auto buffers_c = part.model->buffers();
  ASSERT_EQ(buffers_c.size(), buffers_a.size());
  for (size_t i = 0; i < buffers_a.size(); ++i) EXPECT_TRUE(torch::equal(buffers_a[i], buffers_c[i])) << "buffer " << i;
  EXPECT_LT(fs::file_size(dir / "part.pt"), fs::file_size(dir / "later.pt") / 2) << "no optimizer state";
  test::flip_a_tensor_bit(dir / "part.pt");
  EXPECT_THROW(io::load_flow_checkpoint(dir / "part.pt"), io::CheckpointDamaged);
  // And the model alone.
  auto model_only = io::snapshot_flow_checkpoint(cfg, model);
  const auto at_snapshot = model->parameters()[0].clone();
  train_step();
  io::write_snapshot(dir / "model.pt", *model_only);
  auto m = io::load_flow_checkpoint(dir / "model.pt");
  EXPECT_EQ(m.step, -1);
  EXPECT_TRUE(torch::equal(m.model->parameters()[0], at_snapshot));
}

TEST(CheckpointChild, LoadsAndCompares) {
  const char* dir = std::getenv("NET2NET_CHILD_DIR");
  if (!dir) GTEST_SKIP() << "runs only as the child of FreshProcessReproducesOutputsBitForBit";
  auto loaded = io::load_flow_checkpoint(std::string(dir) + "/model.pt");
  std::vector<Tensor> t;
  torch::load(t, std::string(dir) + "/tensors.pt");
  ASSERT_EQ(t.size(), 6u);
  torch::NoGradGuard g;
  auto out = loaded.model->forward(t[0], t[1]);
  EXPECT_TRUE(torch::equal(out.v, t[3])) << "max |difference| " << (out.v - t[3]).abs().max().item<double>() << " in "
                                         << (out.v != t[3]).any(1).sum().item<int64_t>() << " of 16 rows";
  EXPECT_TRUE(torch::equal(out.logdet, t[4]));
  EXPECT_TRUE(torch::equal(loaded.model->inverse(t[2], t[1]), t[5]));
}

// ------------------------------------------------------------------ against the Python reference
namespace {
void write_tensor(H5::Group& g, const std::string& name, const Tensor& t) {
  auto c = t.contiguous();
  std::vector<hsize_t> dims(c.sizes().begin(), c.sizes().end());
  if (dims.empty()) dims.push_back(1);
  H5::DataSpace space(static_cast<int>(dims.size()), dims.data());
  if (c.scalar_type() == torch::kLong) {
    auto ds = g.createDataSet(name, H5::PredType::NATIVE_INT64, space);
    ds.write(c.data_ptr<int64_t>(), H5::PredType::NATIVE_INT64);
  } else {
    auto d = c.to(torch::kFloat64);
    auto ds = g.createDataSet(name, H5::PredType::NATIVE_DOUBLE, space);
    ds.write(d.data_ptr<double>(), H5::PredType::NATIVE_DOUBLE);
  }
}
}  // namespace

class PythonReference : public ::testing::TestWithParam<std::tuple<int64_t, std::string, std::string, std::string>> {};
INSTANTIATE_TEST_SUITE_P(
    Options, PythonReference,
    ::testing::Values(std::make_tuple(int64_t{6}, "lrelu", "none", "batchnorm"),
                      std::make_tuple(int64_t{8}, "none", "parallel", "none"),
                      std::make_tuple(int64_t{10}, "lrelu", "sequential", "actnorm")));

// Our flow with its weights loaded into an independent Python implementation written the way the
// reference code is (4-D tensors, chunk/swap couplings, 1x1 convs): same v, log-det and inverse.
TEST_P(PythonReference, SameOutputsAsTheReferenceImplementation) {
  if (std::system("/usr/bin/python3 -c 'import torch, h5py' > /dev/null 2>&1") != 0)
    GTEST_SKIP() << "python3-torch / python3-h5py missing (scripts/setup.sh --test installs them)";
  auto [d, act, cond, norm] = GetParam();
  json user = {{"data", {{"train", "t.h5"}, {"condition", "c"}, {"target", "z"}}},
               {"model",
                {{"in_dim", d},
                 {"cond_dim", 3},
                 {"embedding_dim", 5},
                 {"n_flows", 4},
                 {"hidden_dim", 16},
                 {"hidden_depth", 2},
                 {"activation", act},
                 {"conditioning", cond},
                 {"embedder", {{"hidden_dim", 8}, {"depth", 1}, {"norm", norm}}}}}};
  json cfg = config::resolve_config(user, {}, "test");
  auto model = build_flow(config::flow_config_from_json(cfg), 3);
  convert_floating(*model, torch::kFloat64);
  model->train();
  torch::manual_seed(4);
  auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  {
    torch::NoGradGuard g;
    model->forward(torch::randn({64, d}, opts) * 2 - 1, torch::randn({64, 3}, opts));
  }
  model->eval();
  auto x = torch::randn({12, d}, opts) * 1.5, c = torch::randn({12, 3}, opts), v = torch::randn({12, d}, opts);
  torch::NoGradGuard g;
  auto out = model->forward(x, c);
  auto inv = model->inverse(v, c);

  auto dir = temp_dir("pyref");
  auto file = (dir / "flow.h5").string();
  {
    H5::H5File h5(file, H5F_ACC_TRUNC);
    H5::Group root = h5.openGroup("/");
    H5::Group weights = h5.createGroup("weights");
    for (const auto& [name, value] : unbatched_named_parameters(*model)) write_tensor(weights, name, value.contiguous());
    for (const auto& b : model->named_buffers()) write_tensor(weights, b.key(), b.value());
    for (auto [name, t] : {std::pair{"x", x}, std::pair{"c", c}, std::pair{"v_in", v}, std::pair{"v", out.v},
                           std::pair{"logdet", out.logdet}, std::pair{"inverse", inv}})
      write_tensor(root, name, t);
    std::string text = cfg["model"].dump();
    H5::StrType str_type(H5::PredType::C_S1, text.size());
    auto attr = root.createAttribute("model_config", str_type, H5::DataSpace(H5S_SCALAR));
    attr.write(str_type, text);
  }
  std::string cmd = "/usr/bin/python3 '" + std::string(NET2NET_SOURCE_DIR) + "/tests/python/reference_flow.py' compare '" +
                    file + "' > '" + (dir / "result.json").string() + "' 2>&1";
  int rc = std::system(cmd.c_str());
  std::ifstream in(dir / "result.json");
  std::string text((std::istreambuf_iterator<char>(in)), {});
  ASSERT_EQ(rc, 0) << text;
  json diff = json::parse(text);
  EXPECT_LT(diff["v"].get<double>(), 1e-10) << text;
  EXPECT_LT(diff["logdet"].get<double>(), 1e-10) << text;
  EXPECT_LT(diff["inverse"].get<double>(), 1e-10) << text;
  fs::remove_all(dir);
}

// The import of the original repository's cINNs: a checkpoint written with the original's key
// names (our Python reference implementation, saved as the original's Lightning checkpoints hold
// the flow, with its YAML) goes through scripts/import_original.py and net2net-train
// --write-model, and the net2net checkpoint gives the same v and log-det.
TEST(ImportOriginal, TheOriginalsCheckpointGivesTheSameVAndLogDetInNet2net) {
  if (!test::has_python_module("torch") || !test::has_python_module("h5py") || !test::has_python_module("yaml"))
    GTEST_SKIP() << "python3-torch, python3-h5py or python3-yaml missing (scripts/setup.sh --test installs them)";
  const std::string train = std::string(NET2NET_TOOL_DIR) + "/net2net-train/net2net-train";
  const json models[] = {
      {{"in_dim", 6}, {"cond_dim", 4}, {"embedding_dim", 8}, {"n_flows", 3}, {"hidden_dim", 16}, {"hidden_depth", 1},
       {"activation", "lrelu"}, {"conditioning", "parallel"}, {"embedder", {{"hidden_dim", 8}, {"depth", 1}, {"norm", "batchnorm"}}}},
      {{"in_dim", 8}, {"cond_dim", 3}, {"embedding_dim", 5}, {"n_flows", 2}, {"hidden_dim", 12}, {"hidden_depth", 2},
       {"activation", "none"}, {"conditioning", "none"}, {"embedder", {{"hidden_dim", 8}, {"depth", 2}, {"norm", "none"}}}},
      {{"in_dim", 6}, {"cond_dim", 0}, {"n_flows", 3}, {"hidden_dim", 16}, {"hidden_depth", 1}, {"activation", "none"}},
  };
  int index = 0;
  for (const json& m : models) {
    SCOPED_TRACE(m.dump());
    auto dir = temp_dir("import" + std::to_string(index++));
    std::ofstream(dir / "model.json") << m.dump();
    ASSERT_EQ(test::run_python("tests/python/reference_flow.py write-original '" + (dir / "model.json").string() + "' '" +
                               dir.string() + "'"), 0);
    ASSERT_EQ(test::run_python("scripts/import_original.py '" + (dir / "last.ckpt").string() + "' --yaml '" +
                               (dir / "config.yaml").string() + "' --out '" + (dir / "weights.h5").string() + "' > /dev/null"), 0);
    // The config a user writes for it (as configs/faces32to256.json for the original's faces);
    // the dimensions may be left to the weights.
    json cfg = {{"data", {{"train", "unused.h5"}, {"condition", m["cond_dim"] == 0 ? json(nullptr) : json("c")}, {"target", "x"}}},
                {"model", m}};
    cfg["model"]["in_dim"] = nullptr;
    std::ofstream(dir / "config.json") << cfg.dump();
    const std::string log = (dir / "write.log").string();
    ASSERT_EQ(test::wait_exit(test::spawn({train, "--config", dir / "config.json", "--init-from", dir / "weights.h5",
                                           "--write-model", dir / "model.pt"}, log)), 0) << test::slurp(log);
    auto loaded = io::load_flow_checkpoint((dir / "model.pt").string());
    H5::H5File io((dir / "io.h5").string(), H5F_ACC_RDONLY);
    auto read = [&](const char* name) {
      H5::DataSet ds = io.openDataSet(name);
      hsize_t dims[2] = {0, 0};
      const int rank = ds.getSpace().getSimpleExtentDims(dims);
      std::vector<int64_t> sizes(dims, dims + rank);
      auto t = torch::empty(sizes, torch::kFloat64);
      if (t.numel() > 0) ds.read(t.data_ptr<double>(), H5::PredType::NATIVE_DOUBLE);
      return t.to(torch::kFloat32);
    };
    torch::NoGradGuard g;
    auto out = loaded.model->forward(read("x"), read("c"));
    EXPECT_LT((out.v - read("v")).abs().max().item<double>(), 1e-5);
    EXPECT_LT((out.logdet - read("logdet")).abs().max().item<double>(), 1e-5);
    // A config of another architecture is refused, naming the key.
    cfg["model"]["hidden_dim"] = 32;
    std::ofstream(dir / "other.json") << cfg.dump();
    EXPECT_EQ(test::wait_exit(test::spawn({train, "--config", dir / "other.json", "--init-from", dir / "weights.h5",
                                           "--write-model", dir / "other.pt"}, log)), 2);
    EXPECT_NE(test::slurp(log).find("model.hidden_dim"), std::string::npos) << test::slurp(log);
    EXPECT_FALSE(fs::exists(dir / "other.pt"));
    fs::remove_all(dir);
  }
}
