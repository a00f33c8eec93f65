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

namespace {

class SketchExpert : public Expert {
 public:
  std::string spec() const override { return "sketch"; }
  Tensor encode(const data::Batch& b) override {
    if (b.kind != data::ItemKind::Image) throw InputError("expert 'sketch' takes images, got " + data::kind_name(b.kind));
    return sketch_images(b.tensor);
  }
  data::Batch transform(const data::Batch& b) override {
    data::Batch out;
    out.index = b.index;
    out.labels = b.labels;
    out.kind = data::ItemKind::Image;
    out.tensor = encode(b);
    return out;
  }
};

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
}

}  // namespace net2net::example
