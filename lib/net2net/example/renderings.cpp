#include "net2net/example/renderings.h"

#include "net2net/core/error.h"
#include "net2net/example/captions.h"

namespace net2net::example {
using experts::Expert;
using torch::Tensor;

Tensor sketch_images(const Tensor& images) {
  if (images.dim() != 4) throw InputError("expert 'sketch' takes images [N,C,H,W]");
  torch::NoGradGuard no_grad;
  auto grey = images.to(torch::kFloat32).mean(1, /*keepdim=*/true);
  const auto opts = grey.options();
  auto kx = torch::tensor({-1.f, 0.f, 1.f, -2.f, 0.f, 2.f, -1.f, 0.f, 1.f}, opts).reshape({1, 1, 3, 3});
  auto ky = kx.transpose(2, 3).contiguous();
  // Replicated borders: an item touching the frame gets no edge there.
  auto padded = torch::nn::functional::pad(grey, torch::nn::functional::PadFuncOptions({1, 1, 1, 1}).mode(torch::kReplicate));
  auto gx = torch::conv2d(padded, kx), gy = torch::conv2d(padded, ky);
  auto magnitude = (gx.square() + gy.square()).sqrt();
  auto peak = std::get<0>(magnitude.flatten(1).max(1)).clamp_min(1e-6).view({-1, 1, 1, 1});
  return magnitude / peak * 2 - 1;
}

Tensor randomise_texture(const Tensor& images, at::Generator generator) {
  torch::NoGradGuard no_grad;
  const int64_t n = images.size(0);
  const auto cpu = torch::TensorOptions().dtype(torch::kFloat32);
  auto choice = torch::randint(0, 5, {n}, generator, torch::TensorOptions().dtype(torch::kLong));
  // gamma in [1/3, 3], log-uniform; contrast in [0.5, 1]; noise sd 0.25.
  auto gamma = torch::exp((torch::rand({n}, generator, cpu) * 2 - 1) * std::log(3.0)).view({-1, 1, 1, 1});
  auto contrast = (0.5 + 0.5 * torch::rand({n}, generator, cpu)).view({-1, 1, 1, 1});
  auto noise = torch::randn(images.sizes(), generator, cpu) * 0.25;
  const auto device = images.device();
  gamma = gamma.to(device), contrast = contrast.to(device), noise = noise.to(device);
  auto unit = ((images + 1) / 2).clamp(0, 1);
  auto remap = (unit.pow(gamma) * contrast) * 2 - 1;
  auto pick = [&](int64_t k) { return (choice == k).to(device).view({-1, 1, 1, 1}); };
  Tensor out = images.clone();
  out = torch::where(pick(1), -images, out);
  out = torch::where(pick(2), remap, out);
  out = torch::where(pick(3), sketch_images(images), out);
  out = torch::where(pick(4), (remap + noise).clamp(-1, 1), out);
  return out;
}

Tensor silhouette_scores(const Tensor& images) {
  if (images.dim() != 4 || images.size(2) < 7 || images.size(3) < 7)
    throw InputError("expert 'silhouette' takes images [N,C,H,W] of at least 7x7 pixels");
  torch::NoGradGuard no_grad;
  auto unit = (images.to(torch::kFloat32).mean(1, /*keepdim=*/true) + 1) / 2;
  auto score = (unit / 0.2).clamp(0, 1);
  return torch::adaptive_avg_pool2d(score, {7, 7});
}

Tensor background_code(const Tensor& images) {
  if (images.dim() != 4 || images.size(2) < 2 || images.size(3) < 2)
    throw InputError("expert 'background' takes images [N,C,H,W] of at least 2x2 pixels");
  torch::NoGradGuard no_grad;
  auto grey = images.to(torch::kFloat32).mean(1);  // [N,H,W]
  const int64_t h = grey.size(1), w = grey.size(2);
  auto ring = grey.select(1, 0).sum(1) + grey.select(1, h - 1).sum(1) + grey.select(2, 0).narrow(1, 1, h - 2).sum(1) +
              grey.select(2, w - 1).narrow(1, 1, h - 2).sum(1);
  auto mean = ring / static_cast<double>(2 * w + 2 * (h - 2));
  return torch::where(mean > 0, torch::ones_like(mean), -torch::ones_like(mean)).unsqueeze(1);
}

Tensor invert_odd_items(const Tensor& images, const Tensor& index) {
  auto odd = (index.remainder(2) == 1).view({-1, 1, 1, 1});
  return torch::where(odd, -images, images);
}

namespace {

void require_images(const data::Batch& b, const std::string& expert) {
  if (b.kind != data::ItemKind::Image) throw InputError("expert '" + expert + "' takes images, got " + data::kind_name(b.kind));
}

class SketchExpert : public Expert {
 public:
  std::string spec() const override { return "sketch"; }
  Tensor encode(const data::Batch& b) override {
    require_images(b, "sketch");
    return sketch_images(b.tensor);
  }
};

class SilhouetteExpert : public Expert {
 public:
  explicit SilhouetteExpert(std::string mode) : mode_(std::move(mode)) {}
  std::string spec() const override { return "silhouette:" + mode_; }
  Tensor encode(const data::Batch& b) override {
    require_images(b, spec());
    auto soft = silhouette_scores(b.tensor);
    if (mode_ == "soft") return soft;
    auto hard = (soft > 0.5).to(torch::kFloat32);
    if (mode_ == "hard") return hard;
    return torch::upsample_nearest2d(hard, {b.tensor.size(2), b.tensor.size(3)}) * 2 - 1;  // image
  }

 private:
  std::string mode_;
};

class InvertExpert : public Expert {
 public:
  std::string spec() const override { return "invert"; }
  Tensor encode(const data::Batch& b) override {
    require_images(b, "invert");
    return -b.tensor.to(torch::kFloat32);
  }
};

class BackgroundExpert : public Expert {
 public:
  std::string spec() const override { return "background"; }
  Tensor encode(const data::Batch& b) override {
    require_images(b, "background");
    return background_code(b.tensor);
  }
};

class LabelDomainExpert : public Expert {
 public:
  std::string spec() const override { return "label-domain"; }
  Tensor encode(const data::Batch& b) override {
    if (b.kind != data::ItemKind::Image || !b.labels.defined())
      throw InputError("expert 'label-domain' needs labelled images (e.g. --data fashion-mnist:train, or an h5 cache with /label)");
    auto labels = b.labels.to(torch::kLong);
    const auto bad = ((labels < 0) | (labels > 9)).nonzero();
    if (bad.numel() > 0)
      throw InputError("expert 'label-domain': item " + std::to_string(b.index[bad[0][0].item<int64_t>()]) +
                       " has no Fashion-MNIST label (0..9)");
    return torch::cat({torch::one_hot(labels, 10).to(torch::kFloat32), background_code(b.tensor)}, 1);
  }
};

std::unique_ptr<Expert> make_silhouette(const std::string& arg, const std::string& spec, const experts::ExpertContext&) {
  if (arg != "hard" && arg != "soft" && arg != "image")
    throw UsageError("expert '" + spec + "': use silhouette:hard, silhouette:soft or silhouette:image");
  return std::make_unique<SilhouetteExpert>(arg);
}

class LabelPropsExpert : public Expert {
 public:
  std::string spec() const override { return "label-props"; }
  Tensor encode(const data::Batch& b) override {
    auto props = fashion_properties(b);  // checks images and labels
    auto onehot = torch::one_hot(b.labels.to(torch::kLong), 10).to(torch::kFloat32);
    return torch::cat({onehot, props.to(torch::kFloat32)}, 1);
  }
};

}  // namespace

void register_rendering_experts(experts::ExpertRegistry& registry) {
  registry.add(experts::no_argument_kind<SketchExpert>("sketch", "images -> edge maps (Sobel magnitude) [N,1,H,W], white strokes on black"));
  registry.add(experts::no_argument_kind<LabelPropsExpert>(
      "label-props", "labelled Fashion-MNIST images -> [one-hot label, caption-props] [N, 12] (attribute editing)"));
  registry.add({"silhouette", "silhouette:hard|soft|image",
                "images -> the item's silhouette on a 7x7 grid [N,1,7,7]: soft scores in [0,1], the hard mask (0/1), "
                "or that mask drawn as an image (segmentation -> image)",
                make_silhouette});
  registry.add(experts::no_argument_kind<InvertExpert>("invert", "images -> -images (the unaligned experiment's second domain)"));
  registry.add(experts::no_argument_kind<BackgroundExpert>(
      "background", "images -> [N,1] domain code: -1 dark border (as Fashion-MNIST), +1 light (inverted)"));
  registry.add(experts::no_argument_kind<LabelDomainExpert>(
      "label-domain", "labelled images -> [one-hot label, background] [N, 11] (unaligned translation's (class, domain))"));
}

}  // namespace net2net::example
