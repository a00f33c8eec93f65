#include "net2net/example/captions.h"
#include "net2net/example/renderings.h"

#include <cctype>
#include <tuple>
#include <utility>

#include "net2net/core/error.h"

namespace net2net::example {
using experts::Expert;

namespace {
// Foreground share and mean foreground brightness of images [N,1,H,W] in [-1, 1].
std::pair<torch::Tensor, torch::Tensor> image_properties(const torch::Tensor& x) {
  auto p = (x.reshape({x.size(0), -1}) + 1) / 2;
  auto fg = (p > 0.1).to(torch::kFloat32);
  auto size = fg.mean(1);
  auto brightness = (p * fg).sum(1) / fg.sum(1).clamp_min(1);
  return {size, brightness};
}

// Class-relative tertiles of size and brightness over the Fashion-MNIST training images.
struct CaptionThresholds {
  std::vector<float> size_lo, size_hi, bright_lo, bright_hi;
};
const CaptionThresholds& caption_thresholds() {
  static const CaptionThresholds t = [] {
    CaptionThresholds t;
    auto source = data::open_source("fashion-mnist:train");
    std::vector<int64_t> idx(source->size());
    for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
    auto b = source->get(idx);
    auto [size, bright] = image_properties(b.tensor);
    for (int64_t c = 0; c < 10; ++c) {
      auto mask = b.labels == c;
      auto s = std::get<0>(size.masked_select(mask).sort()), br = std::get<0>(bright.masked_select(mask).sort());
      int64_t n = s.size(0);
      t.size_lo.push_back(s[n / 3].item<float>()), t.size_hi.push_back(s[2 * n / 3].item<float>());
      t.bright_lo.push_back(br[n / 3].item<float>()), t.bright_hi.push_back(br[2 * n / 3].item<float>());
    }
    return t;
  }();
  return t;
}
}  // namespace

torch::Tensor fashion_properties(const data::Batch& b) {
  if (b.kind != data::ItemKind::Image || !b.labels.defined())
    throw InputError("expert 'caption' needs labelled Fashion-MNIST images (e.g. --data fashion-mnist:train)");
  const auto& t = caption_thresholds();
  auto [size, bright] = image_properties(b.tensor);
  auto out = torch::zeros({b.size(), 2});
  for (int64_t i = 0; i < b.size(); ++i) {
    int64_t c = b.labels[i].item<int64_t>();
    if (c < 0 || c > 9) throw InputError("expert 'caption': item " + std::to_string(b.index[i]) + " has no Fashion-MNIST label");
    float br = bright[i].item<float>(), sz = size[i].item<float>();
    out[i][0] = br <= t.bright_lo[c] ? -1.0f : br >= t.bright_hi[c] ? 1.0f : 0.0f;
    out[i][1] = sz <= t.size_lo[c] ? -1.0f : sz >= t.size_hi[c] ? 1.0f : 0.0f;
  }
  return out;
}

std::vector<std::string> fashion_captions(const data::Batch& b) {
  auto props = fashion_properties(b);
  std::vector<std::string> out;
  for (int64_t i = 0; i < b.size(); ++i) {
    int64_t c = b.labels[i].item<int64_t>();
    std::string text = "a";
    float br = props[i][0].item<float>(), sz = props[i][1].item<float>();
    if (br < 0) text += " dark";
    else if (br > 0) text += " light";
    if (sz < 0) text += " small";
    else if (sz > 0) text += " large";
    std::string name = data::fashion_mnist_classes()[c];
    for (auto& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    out.push_back(text + " " + name);
  }
  return out;
}

namespace {

class CaptionExpert : public Expert {
 public:
  std::string spec() const override { return "caption"; }
  torch::Tensor encode(const data::Batch&) override {
    throw UsageError("expert 'caption' produces texts: chain it with a text expert, e.g. caption,text-hash:256");
  }
  data::Batch transform(const data::Batch& b) override {
    data::Batch out;
    out.index = b.index;
    out.labels = b.labels;
    out.kind = data::ItemKind::Text;
    out.texts = fashion_captions(b);
    return out;
  }
};

// [N, 2] property codes of the caption: brightness (-1 dark, 0, +1 light), size (-1 small, 0, +1 large).
class CaptionPropsExpert : public Expert {
 public:
  std::string spec() const override { return "caption-props"; }
  torch::Tensor encode(const data::Batch& b) override { return fashion_properties(b); }
};

}  // namespace

void register_example_experts(experts::ExpertRegistry& registry) {
  registry.add(experts::no_argument_kind<CaptionExpert>(
      "caption", "labelled Fashion-MNIST images -> texts \"a [dark|light] [small|large] CLASS\""));
  registry.add(experts::no_argument_kind<CaptionPropsExpert>("caption-props",
                                                             "labelled Fashion-MNIST images -> caption property codes [N, 2]"));
  register_rendering_experts(registry);
}

}  // namespace net2net::example
