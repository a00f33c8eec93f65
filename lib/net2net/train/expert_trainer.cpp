#include "net2net/train/expert_trainer.h"

#include <spdlog/spdlog.h>
#include <torch/script.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "net2net/core/atomic_file.h"
#include "net2net/core/error.h"
#include "net2net/core/progress.h"
#include "net2net/data/source.h"
#include "net2net/example/models.h"
#include "net2net/example/renderings.h"
#include "net2net/train/lr_schedule.h"

namespace net2net::train {
namespace fs = std::filesystem;
using nlohmann::json;
using torch::Tensor;

namespace {

torch::jit::Module build(const json& c) {
  const json& m = c["model"];
  uint64_t seed = c["train"]["seed"];
  if (c["kind"] == "autoencoder") return example::make_autoencoder(m["latent_dim"], m["channels"], seed);
  return example::make_classifier(m["channels"], m["hidden"], m["classes"], seed);
}

struct Images {
  Tensor x, y;
};

Images load_images(const std::string& spec, int64_t limit) {
  auto source = data::open_source(spec);
  int64_t n = limit > 0 ? std::min(limit, source->size()) : source->size();
  std::vector<int64_t> idx(n);
  for (int64_t i = 0; i < n; ++i) idx[i] = i;
  auto b = source->get(idx);
  if (b.kind != data::ItemKind::Image || b.tensor.dim() != 4 || b.tensor.size(1) != 1 || b.tensor.size(2) != 28 ||
      b.tensor.size(3) != 28)
    throw InputError("source '" + spec + "': the example's experts need 1x28x28 images");
  return {b.tensor, b.labels};
}

Tensor call(torch::jit::Module& m, const char* method, const Tensor& x) { return m.get_method(method)({x}).toTensor(); }

}  // namespace

int64_t expert_parameter_count(const json& config) {
  auto m = build(config);
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

json train_expert(const json& config, const std::string& run_dir, bool force, const std::string& device_name) {
  const torch::Device device(device_name);
  const bool ae = config["kind"] == "autoencoder";
  const json& t = config["train"];
  const fs::path dir(run_dir), out = dir / "expert.pt";
  if (fs::exists(out) && !force)
    throw UsageError("'" + out.string() + "' exists; use it as ts:" + out.string() + ", or --force to train again");
  fs::create_directories(dir);
  write_text_atomically((dir / "config.json").string(), config.dump(2) + "\n");

  Images train = load_images(config["data"]["train"], config["data"]["limit"]);
  Images test = load_images(config["data"]["test"], config["data"]["limit"]);
  if (!ae && !train.y.defined()) throw InputError("source '" + config["data"]["train"].get<std::string>() + "' has no labels");

  // Images (and labels) on the device once; the saved expert is moved back to the CPU, so it loads
  // anywhere (net2net's TorchScript experts move themselves to the --device they are used on).
  train.x = train.x.to(device), test.x = test.x.to(device);
  if (train.y.defined()) train.y = train.y.to(device), test.y = test.y.to(device);
  auto module = build(config);
  module.to(device);
  std::vector<Tensor> params;
  for (auto p : module.parameters()) {
    p.set_requires_grad(true);
    params.push_back(p);
  }
  torch::optim::Adam adam(params, torch::optim::AdamOptions(t["lr"].get<double>()));
  const int64_t n = train.x.size(0), batch = std::min<int64_t>(t["batch_size"].get<int64_t>(), n),
                epochs = t["epochs"].get<int64_t>();
  const int64_t per_epoch = std::max<int64_t>(1, n / batch), steps = per_epoch * epochs;
  const bool l1 = ae && config["train"]["loss"] == "l1";
  const double lr = t["lr"];
  const std::string lr_schedule = t["lr_schedule"];
  const std::string augment = t.value("augment", std::string("none"));
  const bool shape_biased = !ae && augment == "shape";
  // The unaligned experiment's two domains (example::invert_odd_items): no item seen in both.
  const bool invert_odd = ae && augment == "invert-odd";
  std::ofstream metrics(dir / "metrics.jsonl", std::ios::trunc);
  Progress progress(std::string("train ") + config["kind"].get<std::string>(), steps, "steps");
  spdlog::info("training the {} '{}' ({} images, {} epochs of {} steps)", config["kind"].get<std::string>(),
               config["name"].get<std::string>(), n, epochs, per_epoch);
  int64_t step = 0;
  for (int64_t e = 0; e < epochs; ++e) {
    auto gen = at::detail::createCPUGenerator(t["seed"].get<uint64_t>() * 1000003ULL + e);
    auto perm = torch::randperm(n, gen, torch::kLong).to(device);
    auto augment_gen = at::detail::createCPUGenerator(t["seed"].get<uint64_t>() * 1000003ULL + e + 7919);
    for (int64_t b = 0; b < per_epoch; ++b, ++step) {
      auto idx = perm.narrow(0, b * batch, batch);
      auto x = train.x.index_select(0, idx);
      if (shape_biased) x = example::randomise_texture(x, augment_gen);
      if (invert_odd) x = example::invert_odd_items(x, idx);
      set_learning_rate(adam, scheduled_lr(lr, lr_schedule, step, steps));
      Tensor loss;
      if (ae) {
        auto r = call(module, "forward", x);
        loss = l1 ? (r - x).abs().mean() : (r - x).pow(2).mean();
      } else {
        loss = torch::nn::functional::cross_entropy(call(module, "forward", x), train.y.index_select(0, idx));
      }
      adam.zero_grad();
      loss.backward();
      adam.step();
      if ((step + 1) % t["log_every"].get<int64_t>() == 0) {
        metrics << json{{"step", step + 1}, {"split", "train"}, {"epoch", e}, {"loss", loss.item<double>()}}.dump() << "\n";
        metrics.flush();
        spdlog::info("step {}/{} loss {:.4f}", step + 1, steps, loss.item<double>());
      }
      progress.update(step + 1);
    }
  }
  progress.finish();
  // Test score.
  json summary = {{"kind", config["kind"]}, {"expert", out.string()}, {"steps", steps}};
  {
    torch::NoGradGuard g;
    double total = 0, correct = 0;
    for (int64_t s = 0; s < test.x.size(0); s += 1000) {
      auto x = test.x.narrow(0, s, std::min<int64_t>(1000, test.x.size(0) - s));
      if (invert_odd) x = example::invert_odd_items(x, torch::arange(s, s + x.size(0), torch::TensorOptions().device(x.device())));
      if (ae) {
        auto r = call(module, "forward", x);
        total += (l1 ? (r - x).abs() : (r - x).pow(2)).mean({1, 2, 3}).sum().item<double>();
      } else {
        auto pred = call(module, "forward", x).argmax(1);
        correct += (pred == test.y.narrow(0, s, x.size(0))).sum().item<double>();
      }
    }
    const double m = static_cast<double>(test.x.size(0));
    if (ae) summary[l1 ? "test_l1" : "test_mse"] = total / m;
    else summary["test_accuracy"] = correct / m;
    metrics << json{{"step", steps}, {"split", "test"}, {ae ? (l1 ? "l1" : "mse") : "accuracy", ae ? total / m : correct / m}}.dump()
            << "\n";
  }
  for (auto p : module.parameters()) p.set_requires_grad(false);
  module.to(torch::kCPU);
  example::save_module(module, out.string());
  spdlog::info("saved {} -> {} ({})", config["kind"].get<std::string>(), out.string(), summary.dump());
  return summary;
}

}  // namespace net2net::train
