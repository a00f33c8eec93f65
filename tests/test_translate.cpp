// net2net-translate: transfer with the exemplar's own condition gives back its z; seeds
// reproduce outputs; temperature 0 is the mode; grids and captions.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <numeric>

#include "net2net/config/cinn_config.h"
#include "net2net/core/error.h"
#include "net2net/data/grid.h"
#include "net2net/data/source.h"
#include "net2net/example/captions.h"
#include "net2net/example/renderings.h"
#include "net2net/experts/expert.h"
#include "net2net/inn/flow.h"
#include "net2net/io/checkpoint.h"
#include "net2net/io/embedding_store.h"
#include "net2net/translate/translate.h"
#include "test_util.h"

using namespace net2net;
namespace fs = std::filesystem;
using nlohmann::json;
using test::TempDir;
using torch::Tensor;

namespace {
// A model (random weights, ActNorm initialised) and a cache of exemplars (c, z) for it.
struct Fixture {
  TempDir dir{"translate"};
  std::string checkpoint, cache;
  Tensor c, z;
  Fixture() {
    json user = {{"data", {{"train", "t.h5"}, {"condition", "c"}, {"target", "z"}, {"condition_expert", "label"}}},
                 {"model", {{"in_dim", 6}, {"cond_dim", 4}, {"embedding_dim", 8}, {"n_flows", 4}, {"hidden_dim", 32}}}};
    json cfg = config::resolve_config(user, {}, "test");
    auto model = inn::build_flow(config::flow_config_from_json(cfg), 1);
    torch::manual_seed(2);
    c = torch::one_hot(torch::tensor({0, 1, 2, 3, 1}, torch::kLong), 4).to(torch::kFloat32);
    z = torch::randn({5, 6}) * 1.5 + 0.3;
    model->train();
    {
      torch::NoGradGuard g;
      model->forward(torch::randn({64, 6}), torch::one_hot(torch::randint(0, 4, {64}, torch::kLong), 4).to(torch::kFloat32));
    }
    model->eval();
    checkpoint = dir / "model.pt";
    io::save_flow_checkpoint(checkpoint, cfg, model);
    cache = dir / "exemplars.h5";
    io::write_store(cache, {}, [&](io::EmbeddingWriter& w) {
      w.create_float("c", 4);
      w.create_float("z", 6);
      w.create_int64("label");
      w.append_float("c", c.data_ptr<float>(), 5);
      w.append_float("z", z.data_ptr<float>(), 5);
      int64_t l[5] = {0, 1, 2, 3, 1};
      w.append_int64("label", l, 5);
    });
  }
  // A request to sample the model under label conditions.
  translate::TranslateRequest request(std::vector<int64_t> labels) const {
    translate::TranslateRequest r;
    r.checkpoint = checkpoint;
    r.labels = std::move(labels);
    return r;
  }
  Tensor read(const std::string& file, const std::string& name, int64_t cols) {
    io::EmbeddingReader r(file);
    auto v = r.read_rows(name, 0, r.rows());
    return torch::from_blob(v.data(), {r.rows(), cols}).clone();
  }
};
}  // namespace

TEST(Translate, TransferWithTheExemplarsOwnConditionGivesBackItsZ) {
  Fixture f;
  translate::TranslateRequest r;
  r.checkpoint = f.checkpoint;
  r.mode = "transfer";
  r.exemplar = f.cache;
  r.cond = "h5:" + f.cache + ":c";  // the exemplars' own conditions as targets
  r.out = f.dir / "t.h5";
  auto s = translate::run_translate(r);
  EXPECT_EQ(s["rows"], 25);
  auto z = f.read(r.out, "z", 6);
  io::EmbeddingReader out(r.out);
  auto ci = out.read_int64("cond_index"), ei = out.read_int64("exemplar_index");
  int checked = 0;
  for (int64_t row = 0; row < 25; ++row) {
    if (ci[row] != ei[row]) continue;
    EXPECT_LT((z[row] - f.z[ei[row]]).abs().max().item<float>(), 1e-4) << "exemplar " << ei[row];
    ++checked;
  }
  EXPECT_EQ(checked, 5);
  // Every row is T^-1(T(z_e | c_e) | c_m), computed here directly.
  auto loaded = io::load_flow_checkpoint(f.checkpoint);
  torch::NoGradGuard g;
  auto v = loaded.model->forward(f.z, f.c).v;
  for (int64_t row = 0; row < 25; ++row) {
    auto expected = loaded.model->inverse(v[ei[row]].unsqueeze(0), f.c[ci[row]].unsqueeze(0))[0];
    EXPECT_LT((z[row] - expected).abs().max().item<float>(), 1e-5) << "row " << row;
  }
}

TEST(Translate, SeedsReproduceAndTemperatureZeroIsTheMode) {
  Fixture f;
  auto r = f.request({0, 2, 3});
  r.samples = 4;
  r.seed = 11;
  r.out = f.dir / "a.h5";
  translate::run_translate(r);
  r.out = f.dir / "b.h5";
  translate::run_translate(r);
  r.seed = 12;
  r.out = f.dir / "c.h5";
  translate::run_translate(r);
  auto a = f.read(f.dir / "a.h5", "z", 6), b = f.read(f.dir / "b.h5", "z", 6), c = f.read(f.dir / "c.h5", "z", 6);
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_FALSE(torch::equal(a, c));
  EXPECT_EQ(io::EmbeddingReader(f.dir / "a.h5").read_int64("label"), (std::vector<int64_t>{0, 0, 0, 0, 2, 2, 2, 2, 3, 3, 3, 3}));
  // Temperature 0: every sample of a condition is T^-1(0 | c).
  r.temperature = 0;
  r.out = f.dir / "d.h5";
  auto summary = translate::run_translate(r);
  auto d = f.read(r.out, "z", 6);
  EXPECT_TRUE(torch::equal(d[0], d[3]));
  EXPECT_NEAR(summary["diversity_z"].get<double>(), 0.0, 1e-6);
  auto loaded = io::load_flow_checkpoint(f.checkpoint);
  torch::NoGradGuard g;
  auto mode = loaded.model->inverse(torch::zeros({1, 6}), torch::one_hot(torch::tensor({2}, torch::kLong), 4).to(torch::kFloat32));
  EXPECT_LT((d[4] - mode[0]).abs().max().item<float>(), 1e-6);
  // The output exists: no silent overwrite; bad conditions are usage errors.
  EXPECT_THROW(translate::run_translate(r), UsageError);
  r.force = true;
  r.labels = {7};
  EXPECT_THROW(translate::run_translate(r), UsageError);
  r.labels.clear();
  r.texts = {"a coat"};
  EXPECT_THROW(translate::run_translate(r), UsageError);  // the model's condition is labels
}

TEST(Translate, DiversityIsTheMeanPairwiseDistanceOverBatchesFromAtMost64Samples) {
  Fixture f;
  // Brute force on the written z: per condition, the mean distance over ordered pairs i != j of
  // its first min(K, 64) samples, averaged over the conditions.
  auto expected = [&](const std::string& file, int64_t conds, int64_t k) {
    auto z = f.read(file, "z", 6).to(torch::kFloat64);
    const int64_t kd = std::min<int64_t>(k, 64);
    double total = 0;
    for (int64_t c = 0; c < conds; ++c) {
      double sum = 0;
      for (int64_t i = 0; i < kd; ++i)
        for (int64_t j = 0; j < kd; ++j)
          if (i != j) sum += (z[c * k + i] - z[c * k + j]).norm().item<double>();
      total += sum / (kd * (kd - 1.0));
    }
    return total / conds;
  };
  auto r = f.request({0, 1, 3});
  // 5 samples, batches of 2 conditions (10 rows): batches of 2 and 1 conditions.
  r.samples = 5;
  r.batch_size = 10;
  r.out = f.dir / "d5.h5";
  auto s5 = translate::run_translate(r);
  EXPECT_NEAR(s5["diversity_z"].get<double>(), expected(r.out, 3, 5), 1e-9);
  EXPECT_GT(s5["diversity_z"].get<double>(), 0.1);
  // 70 samples, a batch per condition: only the first 64 of each enter.
  r.samples = 70;
  r.batch_size = 100;
  r.out = f.dir / "d70.h5";
  auto s70 = translate::run_translate(r);
  EXPECT_NEAR(s70["diversity_z"].get<double>(), expected(r.out, 3, 70), 1e-9);
  // 150 samples in batches of 64 rows: each condition in slices of 64, 64 and 22 rows (a large
  // K no longer makes one batch of a whole condition); the rows still say their condition.
  r.samples = 150;
  r.batch_size = 64;
  r.out = f.dir / "d150.h5";
  auto s150 = translate::run_translate(r);
  EXPECT_NEAR(s150["diversity_z"].get<double>(), expected(r.out, 3, 150), 1e-9);
  io::EmbeddingReader out(r.out);
  auto ci = out.read_int64("cond_index"), labels = out.read_int64("label");
  ASSERT_EQ(ci.size(), 450u);
  for (int64_t row = 0; row < 450; ++row) {
    EXPECT_EQ(ci[row], row / 150) << row;
    EXPECT_EQ(labels[row], r.labels[row / 150]) << row;
  }
  // At temperature 0 every row of a slice is the mode of its own condition, T^-1(0 | c).
  r.temperature = 0;
  r.out = f.dir / "d150t0.h5";
  translate::run_translate(r);
  auto z = f.read(r.out, "z", 6);
  auto loaded = io::load_flow_checkpoint(f.checkpoint);
  torch::NoGradGuard g;
  for (int64_t k = 0; k < 3; ++k) {
    auto c = torch::one_hot(torch::tensor({r.labels[k]}, torch::kLong), 4).to(torch::kFloat32);
    auto mode = loaded.model->inverse(torch::zeros({1, 6}), c)[0];
    for (int64_t row : {k * 150, k * 150 + 63, k * 150 + 64, k * 150 + 149})
      EXPECT_LT((z[row] - mode).abs().max().item<float>(), 1e-6) << "row " << row;
  }
}

TEST(Translate, ConditionsFromACacheAreReadBlockByBlock) {
  // --cond of 5 rows in blocks of --batch-size 2 conditions (batches of 1 condition x 3 samples,
  // so batches cross the blocks): at temperature 0 every row is the mode of its own row of the
  // cache, and /label carries that row's label.
  Fixture f;
  translate::TranslateRequest r;
  r.checkpoint = f.checkpoint;
  r.cond = "h5:" + f.cache + ":c";
  r.samples = 3;
  r.batch_size = 2;
  r.temperature = 0;
  r.out = f.dir / "cond.h5";
  EXPECT_EQ(translate::run_translate(r)["conditions"], 5);
  auto z = f.read(r.out, "z", 6);
  auto labels = io::EmbeddingReader(r.out).read_int64("label");
  auto loaded = io::load_flow_checkpoint(f.checkpoint);
  torch::NoGradGuard g;
  auto modes = loaded.model->inverse(torch::zeros({5, 6}), f.c);
  const std::vector<int64_t> cache_labels = {0, 1, 2, 3, 1};
  ASSERT_EQ(z.size(0), 15);
  for (int64_t row = 0; row < 15; ++row) {
    EXPECT_LT((z[row] - modes[row / 3]).abs().max().item<float>(), 1e-6) << "row " << row;
    EXPECT_EQ(labels[row], cache_labels[row / 3]) << "row " << row;
  }
  r.limit = 2;
  r.out = f.dir / "cond2.h5";
  EXPECT_EQ(translate::run_translate(r)["rows"], 6);
}

TEST(TranslateTool, ASignalStopsBetweenBatchesAndLeavesNoFile) {
  Fixture f;
  const std::string tool = std::string(NET2NET_TOOL_DIR) + "/net2net-translate/net2net-translate";
  const std::string out = f.dir / "big.h5", log = f.dir / "big.log";
  auto temporaries = [&] {
    int n = 0;
    for (const auto& e : fs::directory_iterator(f.dir.path()))
      n += e.path().filename().string().rfind(".big.h5.tmp.", 0) == 0;
    return n;
  };
  // 4 conditions x 2,000,000 samples in batches of 64 rows: minutes of work, stopped at once.
  pid_t pid = test::spawn({tool, "--checkpoint", f.checkpoint, "--labels", "0,1,2,3", "--samples", "2000000",
                           "--batch-size", "64", "--threads", "1", "--out", out},
                          log);
  for (int i = 0; i < 400 && temporaries() == 0; ++i) usleep(50000);
  ASSERT_EQ(temporaries(), 1) << test::slurp(log);
  usleep(200000);
  kill(pid, SIGTERM);
  EXPECT_EQ(test::wait_exit(pid), 1) << test::slurp(log);
  EXPECT_NE(test::slurp(log).find("stopped by signal 15"), std::string::npos) << test::slurp(log);
  EXPECT_FALSE(fs::exists(out));
  EXPECT_EQ(temporaries(), 0);
}

TEST(Translate, ThePngDrawsAtMostGridColsSamplesOfAtMostGridRowsConditions) {
  Fixture f;
  // A TorchScript decoder built here: z [N, 6] -> images [N, 1, 2, 3].
  torch::jit::Module dec("Decoder");
  dec.define("def forward(self, z):\n  return z\ndef decode(self, z):\n  return z.reshape([-1, 1, 2, 3])\n");
  dec.save(f.dir / "decoder.pt");
  auto png_size = [](const std::string& file) {  // width and height from the PNG's IHDR chunk
    std::ifstream in(file, std::ios::binary);
    unsigned char h[24] = {};
    in.read(reinterpret_cast<char*>(h), 24);
    auto be = [&](int o) { return (h[o] << 24) | (h[o + 1] << 16) | (h[o + 2] << 8) | h[o + 3]; };
    return std::pair<int, int>(be(16), be(20));
  };
  auto r = f.request({0, 1, 2});
  r.decoder = "ts:" + f.dir / "decoder.pt";
  r.max_rows_in_png = 2;
  r.batch_size = 64;
  auto run = [&](int64_t samples, int64_t cols, const std::string& name) {
    r.samples = samples, r.max_cols_in_png = cols, r.out = f.dir / (name + ".h5"), r.png = f.dir / (name + ".png");
    translate::run_translate(r);
    return png_size(r.png);
  };
  auto seven = run(7, 64, "seven");             // 2 rows of 7 samples
  auto capped = run(100, 7, "capped");          // 100 samples a condition, 7 drawn (slices of 64 rows)
  auto wide = run(100, 64, "wide");             // 64 drawn
  EXPECT_EQ(capped, seven);
  EXPECT_GT(wide.first, seven.first);
  EXPECT_EQ(wide.second, seven.second);
  EXPECT_EQ(io::EmbeddingReader(f.dir / "capped.h5").rows(), 300);  // the file has every row
}

TEST(Translate, EditStrengthMovesTheConditionLinearlyFromTheExemplarsOwnToTheTarget) {
  Fixture f;
  torch::jit::Module dec("Decoder");
  dec.define("def forward(self, z):\n  return z\ndef decode(self, z):\n  return z.reshape([-1, 1, 2, 3])\n");
  dec.save(f.dir / "decoder.pt");
  translate::TranslateRequest r;
  r.checkpoint = f.checkpoint;
  r.mode = "transfer";
  r.exemplar = f.cache;
  r.exemplar_limit = 3;
  r.labels = {2, 3};
  r.alphas = {0, 0.5, 1};
  r.decoder = "ts:" + f.dir / "decoder.pt";
  r.out = f.dir / "edit.h5";
  r.png = f.dir / "edit.png";
  auto s = translate::run_translate(r);
  EXPECT_EQ(s["rows"], 2 * 3 * 3);
  auto z = f.read(r.out, "z", 6), alpha = f.read(r.out, "alpha", 1);
  io::EmbeddingReader out(r.out);
  auto ci = out.read_int64("cond_index"), ei = out.read_int64("exemplar_index");
  // Every row is T^-1(T(z_e | c_e) | (1 - a) c_e + a c_target), computed here directly.
  auto loaded = io::load_flow_checkpoint(f.checkpoint);
  torch::NoGradGuard g;
  auto v = loaded.model->forward(f.z, f.c).v;
  const std::vector<int64_t> labels = {2, 3};
  for (int64_t row = 0; row < 18; ++row) {
    const float a = alpha[row][0].item<float>();
    EXPECT_EQ(a, float(std::vector<double>{0, 0.5, 1}[row % 3])) << "row " << row;
    EXPECT_EQ(ei[row], (row / 3) % 3);
    EXPECT_EQ(ci[row], row / 9);
    auto target = torch::one_hot(torch::tensor({labels[ci[row]]}, torch::kLong), 4).to(torch::kFloat32);
    auto c = (1 - a) * f.c[ei[row]].unsqueeze(0) + a * target;
    auto expected = loaded.model->inverse(v[ei[row]].unsqueeze(0), c)[0];
    EXPECT_LT((z[row] - expected).abs().max().item<float>(), 1e-5) << "row " << row;
    if (a == 0) EXPECT_LT((z[row] - f.z[ei[row]]).abs().max().item<float>(), 1e-4) << "strength 0 is the exemplar";
  }
  // Strength 1 is the plain transfer.
  translate::TranslateRequest plain = r;
  plain.alphas.clear();
  plain.out = f.dir / "plain.h5";
  plain.png = f.dir / "plain.png";
  translate::run_translate(plain);
  auto zp = f.read(plain.out, "z", 6);
  for (int64_t row = 2; row < 18; row += 3)
    EXPECT_LT((z[row] - zp[ci[row] * 3 + ei[row]]).abs().max().item<float>(), 1e-6) << "row " << row;
  // The PNG: a strip per (condition, exemplar), one column more than strengths (the exemplar).
  auto png_size = [](const std::string& file) {
    std::ifstream in(file, std::ios::binary);
    unsigned char h[24] = {};
    in.read(reinterpret_cast<char*>(h), 24);
    auto be = [&](int o) { return (h[o] << 24) | (h[o + 1] << 16) | (h[o + 2] << 8) | h[o + 3]; };
    return std::pair<int, int>(be(16), be(20));
  };
  auto three = png_size(r.png);
  r.alphas = {0, 1};
  r.out = f.dir / "edit2.h5", r.png = f.dir / "edit2.png";
  translate::run_translate(r);
  auto two = png_size(r.png);
  EXPECT_GT(three.first, two.first);
  EXPECT_EQ(three.second, two.second);
  EXPECT_GT(three.second, png_size(plain.png).second) << "6 strips are more rows than 1 + 2 plain ones";
  // Strengths only in transfer mode, and finite.
  r.force = true;
  r.alphas = {std::nan("")};
  EXPECT_THROW(translate::run_translate(r), UsageError);
  r.alphas = {0.5};
  r.mode = "sample";
  EXPECT_THROW(translate::run_translate(r), UsageError);
}

TEST(Translate, AnEditSetsColumnsOfEachExemplarsOwnConditionAndKeepsItsClass) {
  Fixture f;
  translate::TranslateRequest r;
  r.checkpoint = f.checkpoint;
  r.mode = "transfer";
  r.exemplar = f.cache;
  r.exemplar_limit = 4;
  r.edits = {"3=1", "0=0,2=0.5"};
  r.out = f.dir / "edit.h5";
  auto s = translate::run_translate(r);
  EXPECT_EQ(s["rows"], 2 * 4);
  auto z = f.read(r.out, "z", 6), cond = f.read(r.out, "cond", 4);
  io::EmbeddingReader out(r.out);
  auto ci = out.read_int64("cond_index"), ei = out.read_int64("exemplar_index"), label = out.read_int64("label");
  auto loaded = io::load_flow_checkpoint(f.checkpoint);
  torch::NoGradGuard g;
  auto v = loaded.model->forward(f.z, f.c).v;
  const std::vector<int64_t> exemplar_labels = {0, 1, 2, 3};
  for (int64_t row = 0; row < 8; ++row) {
    EXPECT_EQ(ci[row], row / 4);
    EXPECT_EQ(ei[row], row % 4);
    EXPECT_EQ(label[row], exemplar_labels[ei[row]]) << "the exemplar's class";
    auto c = f.c[ei[row]].clone();
    if (ci[row] == 0) {
      c[3] = 1.0f;
    } else {
      c[0] = 0.0f, c[2] = 0.5f;
    }
    EXPECT_TRUE(torch::equal(cond[row], c)) << "row " << row << ": " << cond[row] << " vs " << c;
    auto expected = loaded.model->inverse(v[ei[row]].unsqueeze(0), c.unsqueeze(0))[0];
    EXPECT_LT((z[row] - expected).abs().max().item<float>(), 1e-5) << "row " << row;
  }
  // With strengths, /cond is the blend actually rendered.
  r.alphas = {0, 0.5};
  r.edits = {"3=1"};
  r.out = f.dir / "edit_alpha.h5";
  translate::run_translate(r);
  auto blend = f.read(r.out, "cond", 4);
  for (int64_t row = 0; row < 8; ++row) {
    auto own = f.c[row / 2], target = own.clone();
    target[3] = 1.0f;
    auto expected = row % 2 == 0 ? own : 0.5 * own + 0.5 * target;
    EXPECT_TRUE(torch::allclose(blend[row], expected)) << "row " << row;
  }
  // Refused: outside transfer, bad columns and values, with another kind of condition.
  r.force = true, r.alphas.clear();
  for (const char* bad : {"4=1", "-1=1", "x=1", "1", "1=nan", "1=2x", "1=1,"}) {
    r.edits = {bad};
    try {
      translate::run_translate(r);
      ADD_FAILURE() << bad << " was taken";
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("--edit '" + std::string(bad) + "'"), std::string::npos) << e.what();
    }
  }
  r.edits = {"1=1"};
  r.labels = {2};
  EXPECT_THROW(translate::run_translate(r), UsageError);
  r.labels.clear();
  r.mode = "sample";
  EXPECT_THROW(translate::run_translate(r), UsageError);
}

TEST(Translate, PngInputsStartsEachGridRowWithTheConditionsInputItem) {
  Fixture f;
  torch::jit::Module dec("Decoder");
  dec.define("def forward(self, z):\n  return z\ndef decode(self, z):\n  return z.reshape([-1, 1, 2, 3])\n");
  dec.save(f.dir / "decoder.pt");
  // Images of the decoded shape, labelled: conditions through label:4.
  const std::string images = f.dir / "images.h5";
  auto pixels = torch::linspace(-1, 1, 5 * 6).reshape({5, 6}).contiguous();
  io::write_store(images, {}, [&](io::EmbeddingWriter& w) {
    w.create_float("img", 6, {1, 2, 3});
    w.create_int64("label");
    w.append_float("img", pixels.data_ptr<float>(), 5);
    int64_t l[5] = {0, 1, 2, 3, 1};
    w.append_int64("label", l, 5);
  });
  translate::TranslateRequest r;
  r.checkpoint = f.checkpoint;
  r.data = "h5:" + images + ":img";
  r.cond_expert = "label:4";
  r.samples = 3;
  r.decoder = "ts:" + f.dir / "decoder.pt";
  r.out = f.dir / "plain.h5", r.png = f.dir / "plain.png";
  translate::run_translate(r);
  translate::TranslateRequest with = r;
  with.png_inputs = true;
  with.out = f.dir / "with.h5", with.png = f.dir / "with.png";
  translate::run_translate(with);
  auto plain = data::read_image(r.png), inputs = data::read_image(with.png);
  EXPECT_EQ(inputs.size(1), plain.size(1)) << "as many rows";
  EXPECT_EQ(inputs.size(2) - plain.size(2), 3 + 2) << "one cell (3 wide) and its gap more";
  // The samples are the same rows either way.
  EXPECT_TRUE(torch::equal(f.read(r.out, "z", 6), f.read(with.out, "z", 6)));
  // Transfer (the layout of each --data item with the exemplars' residuals): the exemplars' row
  // on top starts with a blank (black) cell, each target row with its input item.
  translate::TranslateRequest transfer = r;
  transfer.mode = "transfer", transfer.exemplar = f.cache, transfer.exemplar_limit = 2, transfer.limit = 3;
  transfer.samples = 1;
  transfer.out = f.dir / "transfer.h5", transfer.png = f.dir / "transfer.png";
  translate::run_translate(transfer);
  auto transfer_plain = data::read_image(transfer.png);
  transfer.png_inputs = true, transfer.force = true;
  translate::run_translate(transfer);
  auto transfer_inputs = data::read_image(transfer.png);
  EXPECT_EQ(transfer_inputs.size(1), transfer_plain.size(1)) << "the exemplars' row and the 3 targets' rows";
  EXPECT_EQ(transfer_inputs.size(2) - transfer_plain.size(2), 3 + 2);
  // The samples' cells (the rightmost 2 columns of 3 pixels and their gaps) are the same.
  const int64_t cells = 2 * (3 + 2);
  EXPECT_TRUE(torch::allclose(transfer_inputs.narrow(2, transfer_inputs.size(2) - cells, cells),
                              transfer_plain.narrow(2, transfer_plain.size(2) - cells, cells), 0, 2.0 / 255));
  // The input column (cells 3 x 2 with 2-pixel gaps): blank (black) beside the exemplars, then the
  // first --data items.
  const int64_t x0 = transfer_inputs.size(2) - 3 * (3 + 2);
  auto input_cell = [&](int64_t row) { return transfer_inputs.narrow(1, 2 + row * (2 + 2), 2).narrow(2, x0, 3); };
  EXPECT_TRUE(torch::allclose(input_cell(0), torch::full({1, 2, 3}, -1.0f), 0, 1e-6)) << input_cell(0);
  for (int64_t k = 0; k < 3; ++k)
    EXPECT_TRUE(torch::allclose(input_cell(1 + k), pixels[k].reshape({1, 2, 3}), 0, 2.0 / 255)) << k;
  // Only with --data, --png, no --alpha; images of the decoded shape.
  transfer.alphas = {0, 1};
  EXPECT_THROW(translate::run_translate(transfer), UsageError);
  with.force = true;
  with.cond_expert = "label:4";
  with.data.clear(), with.labels = {1};
  EXPECT_THROW(translate::run_translate(with), UsageError);
  with.labels.clear(), with.data = r.data;
  with.decoder = "identity";  // decodes to vectors: not the images' shape
  EXPECT_THROW(translate::run_translate(with), InputError);
}

TEST(Translate, AMissingRecordedDecoderSaysWhereItCameFrom) {
  // The checkpoint records its target expert's path as net2net-train saw it; moved elsewhere,
  // --png fails with an error that names the checkpoint and --decoder, keeping the I/O exit code.
  TempDir dir{"translate-decoder"};
  json user = {{"data", {{"train", "t.h5"}, {"condition", "c"}, {"target", "z"}, {"condition_expert", "label"}}},
               {"model", {{"in_dim", 6}, {"cond_dim", 4}, {"embedding_dim", 8}, {"n_flows", 2}, {"hidden_dim", 16}}}};
  json cfg = config::resolve_config(user, {}, "test");
  cfg["data"]["target_expert"] = "ts:" + dir / "moved/ae.pt" + ":encode";
  auto model = inn::build_flow(config::flow_config_from_json(cfg), 1);
  model->eval();
  io::save_flow_checkpoint(dir / "model.pt", cfg, model);
  translate::TranslateRequest r;
  r.checkpoint = dir / "model.pt";
  r.labels = {1};
  r.out = dir / "out.h5";
  r.png = dir / "out.png";
  try {
    translate::run_translate(r);
    ADD_FAILURE() << "a missing decoder was accepted";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_EQ(e.exit_code(), kExitIo) << what;
    EXPECT_NE(what.find("moved/ae.pt"), std::string::npos) << what;
    EXPECT_NE(what.find("recorded in " + r.checkpoint), std::string::npos) << what;
    EXPECT_NE(what.find("--decoder"), std::string::npos) << what;
  }
  // Given on the command line, the error is the expert's own.
  r.decoder = "ts:" + dir / "also-missing.pt";
  try {
    translate::run_translate(r);
    ADD_FAILURE() << "a missing decoder was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).find("recorded in"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(r.out));
  EXPECT_FALSE(fs::exists(r.png));
}

TEST(Grid, RowsColumnsAndCaptions) {
  auto images = torch::full({6, 1, 4, 5}, -1.0f);
  auto g = data::make_grid(images, 2, 3, {"coat", "a sandal"});
  int label_width = std::min(data::text_width("a sandal") + 6, 220);
  EXPECT_EQ(g.size(1), 2 * (4 + 2) + 2);
  EXPECT_EQ(g.size(2), label_width + 3 * (5 + 2) + 2);
  // Caption pixels are drawn (black) in the label area; the gaps stay white.
  EXPECT_LT(g.narrow(2, 0, label_width).min().item<float>(), 0.0f);
  EXPECT_EQ(g[0][0][label_width].item<float>(), 1.0f);
}

TEST(Captions, ClassAndRelativeProperties) {
  if (!fs::exists(data::default_fashion_mnist_dir() + "/train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "dataset-fashion-mnist not installed";
  auto source = data::open_source("fashion-mnist:train");
  auto b = source->get({0, 1, 2, 3, 4, 5, 6, 7});
  auto texts = example::fashion_captions(b);
  const auto& names = data::fashion_mnist_classes();
  int with_property = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    std::string name = names[b.labels[i].item<int64_t>()];
    for (auto& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    EXPECT_NE(texts[i].find(name), std::string::npos) << texts[i];
    with_property += texts[i].find("dark") != std::string::npos || texts[i].find("light") != std::string::npos ||
                     texts[i].find("small") != std::string::npos || texts[i].find("large") != std::string::npos;
  }
  EXPECT_GT(with_property, 0);
  // Darker images of a class get "dark": scale an item towards black and caption again.
  auto darker = b;
  darker.tensor = (b.tensor + 1) * 0.3 - 1;
  for (const auto& t : example::fashion_captions(darker)) EXPECT_EQ(t.find("light"), std::string::npos) << t;
  // As a chain, captions become text-hash vectors equal to hashing the caption text.
  auto chain = experts::make_expert("caption,text-hash:64")->encode(b);
  EXPECT_TRUE(torch::allclose(chain, experts::text_hash(texts, 64)));
  EXPECT_THROW(experts::make_expert("caption")->encode(b), UsageError);
}

TEST(Renderings, SketchIsTheSobelMagnitudeScaledByEachImagesMaximum) {
  torch::manual_seed(3);
  auto x = torch::rand({2, 1, 6, 7}) * 2 - 1;
  auto s = example::sketch_images(x);
  ASSERT_EQ(s.sizes(), x.sizes());
  // Brute force: 3x3 Sobel with replicated borders, loop by loop.
  const int kx[3][3] = {{-1, 0, 1}, {-2, 0, 2}, {-1, 0, 1}};
  for (int64_t n = 0; n < 2; ++n) {
    std::vector<double> mag(6 * 7);
    double peak = 0;
    for (int i = 0; i < 6; ++i)
      for (int j = 0; j < 7; ++j) {
        double gx = 0, gy = 0;
        for (int a = -1; a <= 1; ++a)
          for (int b = -1; b <= 1; ++b) {
            int ii = std::clamp(i + a, 0, 5), jj = std::clamp(j + b, 0, 6);
            double v = x[n][0][ii][jj].item<double>();
            gx += kx[a + 1][b + 1] * v, gy += kx[b + 1][a + 1] * v;
          }
        mag[i * 7 + j] = std::sqrt(gx * gx + gy * gy);
        peak = std::max(peak, mag[i * 7 + j]);
      }
    for (int i = 0; i < 6; ++i)
      for (int j = 0; j < 7; ++j) EXPECT_NEAR(s[n][0][i][j].item<double>(), mag[i * 7 + j] / peak * 2 - 1, 1e-5) << n << " " << i << " " << j;
  }
  // A flat image has no edge (all black), not a division by zero; colour becomes grey first.
  EXPECT_TRUE(torch::equal(example::sketch_images(torch::full({1, 3, 4, 4}, 0.3f)), torch::full({1, 1, 4, 4}, -1.0f)));
  // As an expert, and as the first link of a chain (images on to the next).
  data::Batch b;
  b.kind = data::ItemKind::Image, b.tensor = x, b.index = {0, 1};
  EXPECT_TRUE(torch::allclose(experts::make_expert("sketch")->encode(b), s));
  EXPECT_TRUE(torch::allclose(experts::make_expert("sketch,identity")->encode(b).reshape(s.sizes()), s));
}

TEST(Renderings, TextureRandomisationIsSeededKeepsTheRangeAndUsesEveryRendering) {
  torch::manual_seed(4);
  auto x = torch::rand({500, 1, 8, 8}) * 2 - 1;
  auto a = example::randomise_texture(x, at::detail::createCPUGenerator(7));
  EXPECT_TRUE(torch::equal(a, example::randomise_texture(x, at::detail::createCPUGenerator(7))));
  EXPECT_FALSE(torch::equal(a, example::randomise_texture(x, at::detail::createCPUGenerator(8))));
  EXPECT_GE(a.min().item<float>(), -1.0f);
  EXPECT_LE(a.max().item<float>(), 1.0f);
  // About a fifth each kept, inverted, sketched; the rest remapped (with noise or not).
  auto sk = example::sketch_images(x);
  int same = 0, inverted = 0, sketched = 0;
  for (int64_t i = 0; i < 500; ++i) {
    same += torch::equal(a[i], x[i]);
    inverted += torch::equal(a[i], -x[i]);
    sketched += torch::equal(a[i], sk[i]);
  }
  for (int k : {same, inverted, sketched}) {
    EXPECT_GT(k, 60);
    EXPECT_LT(k, 140);
  }
}

TEST(Renderings, LabelPropsIsTheOneHotLabelThenTheCaptionProperties) {
  if (!fs::exists(data::default_fashion_mnist_dir() + "/train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "dataset-fashion-mnist not installed";
  auto b = data::open_source("fashion-mnist:test")->get({0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  auto c = experts::make_expert("label-props")->encode(b);
  ASSERT_EQ(c.sizes(), (std::vector<int64_t>{10, 12}));
  for (int64_t i = 0; i < 10; ++i) {
    EXPECT_EQ(c[i].narrow(0, 0, 10).argmax().item<int64_t>(), b.labels[i].item<int64_t>());
    EXPECT_EQ(c[i].narrow(0, 0, 10).sum().item<float>(), 1.0f);
  }
  EXPECT_TRUE(torch::equal(c.narrow(1, 10, 2), example::fashion_properties(b)));
  data::Batch unlabelled = b;
  unlabelled.labels = torch::Tensor();
  EXPECT_THROW(experts::make_expert("label-props")->encode(unlabelled), InputError);
}

TEST(Renderings, SilhouetteScoresAreCellMeansOfTheRampedIntensityAndHardIsTheirArgmax) {
  torch::manual_seed(5);
  auto x = torch::rand({2, 1, 14, 21}) * 2 - 1;
  data::Batch b;
  b.kind = data::ItemKind::Image, b.tensor = x, b.index = {0, 1};
  auto soft = experts::make_expert("silhouette:soft")->encode(b);
  auto hard = experts::make_expert("silhouette:hard")->encode(b);
  ASSERT_EQ(soft.sizes(), (std::vector<int64_t>{2, 1, 7, 7}));
  // Brute force: 2x3 cells of a 14x21 image; a pixel scores min(1, max(0, u / 0.2)), u in [0, 1].
  for (int64_t n = 0; n < 2; ++n)
    for (int i = 0; i < 7; ++i)
      for (int j = 0; j < 7; ++j) {
        double sum = 0;
        for (int a = 0; a < 2; ++a)
          for (int c = 0; c < 3; ++c) {
            double u = (x[n][0][2 * i + a][3 * j + c].item<double>() + 1) / 2;
            sum += std::clamp(u / 0.2, 0.0, 1.0);
          }
        EXPECT_NEAR(soft[n][0][i][j].item<double>(), sum / 6, 1e-5) << n << " " << i << " " << j;
        EXPECT_EQ(hard[n][0][i][j].item<float>(), sum / 6 > 0.5 ? 1.0f : 0.0f);
      }
  // The mask drawn as an image maps back to the same mask (the grids' --data).
  auto image = experts::make_expert("silhouette:image")->encode(b);
  ASSERT_EQ(image.sizes(), x.sizes());
  EXPECT_TRUE(torch::equal(image.abs(), torch::ones_like(image)));
  data::Batch drawn = b;
  drawn.tensor = image;
  EXPECT_TRUE(torch::equal(experts::make_expert("silhouette:hard")->encode(drawn), hard));
  // A black image has no item; too small an image and a bad mode are refused.
  b.tensor = torch::full({1, 1, 28, 28}, -1.0f), b.index = {0};
  EXPECT_EQ(experts::make_expert("silhouette:soft")->encode(b).abs().sum().item<float>(), 0.0f);
  b.tensor = torch::zeros({1, 1, 6, 28});
  EXPECT_THROW(experts::make_expert("silhouette:hard")->encode(b), InputError);
  for (const char* spec : {"silhouette", "silhouette:logits", "silhouette:hard:7"})
    EXPECT_THROW(experts::make_expert(spec), UsageError) << spec;
}

TEST(Renderings, InvertBackgroundAndLabelDomainTellTheTwoDomainsApart) {
  auto background = experts::make_expert("background");
  // Brute force: each border pixel counted once, the sign of their mean decides. 3 x 8, border
  // 2 * 8 + 2 * 1 = 18 pixels: the top row at +1 (8), the rest at -0.5 gives (8 - 5) / 18 > 0; at
  // -0.7, (8 - 7) / 18 > 0; the interior (6 pixels) never counts.
  for (float rest : {-0.5f, -0.7f, -0.9f}) {
    auto img = torch::full({1, 1, 3, 8}, rest);
    img[0][0][0].fill_(1.0f);
    img[0][0][1].narrow(0, 1, 6).fill_(-1.0f);  // the interior, darker still
    double sum = 0;
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 8; ++j)
        if (i == 0 || i == 2 || j == 0 || j == 7) sum += img[0][0][i][j].item<double>();
    data::Batch one;
    one.kind = data::ItemKind::Image, one.tensor = img, one.index = {0};
    EXPECT_EQ(background->encode(one).item<float>(), sum > 0 ? 1.0f : -1.0f) << rest << " " << sum;
    EXPECT_EQ(background->encode(one).item<float>(), rest > -0.89f ? 1.0f : -1.0f) << rest;
  }
  if (!fs::exists(data::default_fashion_mnist_dir() + "/train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "dataset-fashion-mnist not installed";
  std::vector<int64_t> idx(200);
  std::iota(idx.begin(), idx.end(), 0);
  auto b = data::open_source("fashion-mnist:test")->get(idx);
  auto inverted = experts::make_expert("invert")->transform(b);
  EXPECT_TRUE(torch::equal(inverted.tensor, -b.tensor));
  EXPECT_TRUE(torch::equal(inverted.labels, b.labels)) << "labels travel on in a chain";
  // The domain code: -1 for every real item, +1 for every inverted one.
  EXPECT_TRUE(torch::equal(background->encode(b), -torch::ones({200, 1})));
  EXPECT_TRUE(torch::equal(background->encode(inverted), torch::ones({200, 1})));
  EXPECT_TRUE(torch::equal(experts::make_expert("invert,background")->encode(b), torch::ones({200, 1})));
  // (class, domain): the one-hot label, then the code.
  auto c = experts::make_expert("label-domain")->encode(inverted);
  ASSERT_EQ(c.sizes(), (std::vector<int64_t>{200, 11}));
  EXPECT_TRUE(torch::equal(c.narrow(1, 0, 10).argmax(1), b.labels.to(torch::kLong)));
  EXPECT_TRUE(torch::equal(c.narrow(1, 10, 1), torch::ones({200, 1})));
  data::Batch unlabelled = b;
  unlabelled.labels = torch::Tensor();
  EXPECT_THROW(experts::make_expert("label-domain")->encode(unlabelled), InputError);
  data::Batch texts;
  texts.kind = data::ItemKind::Text, texts.texts = {"a"}, texts.index = {0};
  for (const char* spec : {"invert", "background", "silhouette:soft"}) EXPECT_THROW(experts::make_expert(spec)->encode(texts), InputError) << spec;
}

TEST(Renderings, InvertOddItemsInvertsExactlyTheItemsOfOddIndex) {
  torch::manual_seed(7);
  auto x = torch::rand({6, 1, 4, 4}) * 2 - 1;
  auto index = torch::tensor({5, 2, 8, 3, 0, 11}, torch::kLong);  // a shuffled batch
  auto y = example::invert_odd_items(x, index);
  for (int64_t i = 0; i < 6; ++i)
    EXPECT_TRUE(torch::equal(y[i], index[i].item<int64_t>() % 2 ? -x[i] : x[i])) << index[i].item<int64_t>();
  // The same item always lands in the same domain, whatever batch it is in.
  EXPECT_TRUE(torch::equal(example::invert_odd_items(x.narrow(0, 3, 1), index.narrow(0, 3, 1)), -x.narrow(0, 3, 1)));
}
