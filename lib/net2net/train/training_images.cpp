#include "net2net/train/training_images.h"

#include <spdlog/spdlog.h>

#include <cstdio>
#include <fstream>

#include "net2net/core/error.h"
#include "net2net/data/grid.h"
#include "net2net/data/source.h"

namespace net2net::train {
namespace fs = std::filesystem;
using nlohmann::json;
using torch::Tensor;

TrainingImages::TrainingImages(const json& config, const Tensor& cond, const Tensor& target, const fs::path& run_dir,
                               torch::Device device)
    : dir_(run_dir / "images"), metrics_(run_dir / "metrics.jsonl"), device_(device) {
  const json& t = config["train"];
  every_ = t["image_every"].get<int64_t>();
  if (every_ <= 0) return;
  fs::create_directories(dir_);
  const json& spec = config["data"]["target_expert"];
  const int64_t items = std::min<int64_t>(t["image_items"].get<int64_t>(), target.size(0));
  if (!spec.is_string() || items < 1) {
    spdlog::info("training images: no decoder (data.target_expert {}); only images/loss.png",
                 spec.is_string() ? "without validation rows" : "is not set");
    return;
  }
  try {
    experts::ExpertContext ctx;
    ctx.device = device;
    auto expert = experts::make_expert(spec.get<std::string>(), ctx);
    if (expert->can_decode()) decoder_ = std::move(expert);
    else spdlog::info("training images: the target expert '{}' does not decode; only images/loss.png", spec.get<std::string>());
  } catch (const Error& e) {
    // A missing decoder must not stop a training job: the images are for looking at.
    spdlog::warn("training images: cannot load the target expert '{}' ({}); only images/loss.png", spec.get<std::string>(),
                 e.what());
  }
  if (!decoder_) return;
  cond_ = cond.narrow(0, 0, items).to(device);
  target_ = target.narrow(0, 0, items).to(device);
  // The residuals drawn once, from their own generator: the training's RNG is not touched.
  auto gen = at::detail::createCPUGenerator(t["seed"].get<uint64_t>() ^ 0x1A6E5ULL);
  v_ = at::randn({t["image_samples"].get<int64_t>(), items, target.size(1)}, gen, torch::kFloat64);
}

bool TrainingImages::due(int64_t step, int64_t every, int64_t last) {
  if (every <= 0 || step < 1) return false;
  if (step == last || step % every == 0) return true;
  return step < every && (step & (step - 1)) == 0;  // a power of two
}

void TrainingImages::write_grid(inn::ConditionalFlow& model, int64_t step) {
  if (!decoder_) return;
  const bool was_training = model->is_training();
  // The images are for looking at: a decoder that fails, returns other shapes, or a full disk
  // turns them off with a warning, never stops the training job.
  try {
    draw_grid(model, step);
  } catch (const std::exception& e) {
    spdlog::warn("training images: step {}: {}; no more grids in this run", step, e.what());
    decoder_.reset();
  }
  model->train(was_training);
}

void TrainingImages::draw_grid(inn::ConditionalFlow& model, int64_t step) {
  torch::NoGradGuard no_grad;
  model->eval();
  const auto type = model->parameters().front().scalar_type();
  auto c = cond_.to(type), x = target_.to(type);
  const int64_t k = x.size(0), samples = v_.size(0);
  std::vector<Tensor> rows = {x};
  for (int64_t s = 0; s < samples; ++s) rows.push_back(model->inverse(v_[s].to(device_, type), c));
  // Transfer: item i's residual under item i + 1's condition.
  auto v = model->forward(x, c).v;
  rows.push_back(model->inverse(v, torch::roll(c, -1, 0)));
  auto z = torch::cat(rows).to(torch::kFloat32);
  auto images = decoder_->decode(z).to(torch::kCPU, torch::kFloat32);
  if (images.dim() != 4 || images.size(0) != z.size(0) || (images.size(1) != 1 && images.size(1) != 3))
    throw InputError("the decoder returned shape " + c10::str(images.sizes()) + " for " + std::to_string(z.size(0)) +
                     " codes, not images [N, 1|3, H, W]");
  std::vector<std::string> labels = {"step " + std::to_string(step) + ": targets"};
  for (int64_t s = 0; s < samples; ++s) labels.push_back("sample " + std::to_string(s + 1) + " (T=1)");
  labels.push_back("transfer (i <- i+1)");
  char name[64];
  std::snprintf(name, sizeof name, "step_%07lld.png", static_cast<long long>(step));
  data::write_png((dir_ / name).string(), data::make_grid(images, samples + 2, k, labels));
}

void TrainingImages::write_loss_plot() const {
  if (every_ <= 0) return;
  try {
    draw_loss_plot();
  } catch (const std::exception& e) {
    spdlog::warn("training images: images/loss.png: {}", e.what());
  }
}

void TrainingImages::draw_loss_plot() const {
  data::PlotSeries train{"train", {}, {}, {0.12f, 0.35f, 0.85f}}, val{"validation", {}, {}, {0.85f, 0.2f, 0.15f}};
  std::ifstream in(metrics_);
  for (std::string line; std::getline(in, line);) {
    const json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("loss") || !j["loss"].is_number() || j.value("skipped", false))
      continue;
    auto& s = j.value("split", "") == "val" ? val : train;
    s.x.push_back(j.value("step", 0.0));
    s.y.push_back(j["loss"].get<double>());
  }
  data::write_png((dir_ / "loss.png").string(),
                  data::make_line_plot({train, val}, "loss per step (NLL + -logdet, per item)", "step"));
}

}  // namespace net2net::train
