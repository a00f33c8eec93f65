#include "net2net/train/warm_start.h"

#include <fnmatch.h>

#include <map>

#include "net2net/core/error.h"
#include "net2net/io/checkpoint.h"

namespace net2net::train {
using torch::Tensor;

bool ignored_by(const std::string& name, const std::vector<std::string>& patterns) {
  for (const auto& p : patterns) {
    if (p.empty()) continue;
    if (name.compare(0, p.size(), p) == 0) return true;
    if (fnmatch(p.c_str(), name.c_str(), 0) == 0) return true;
  }
  return false;
}

namespace {
std::map<std::string, Tensor> named_tensors(torch::nn::Module& m) {
  std::map<std::string, Tensor> out;
  for (const auto& p : m.named_parameters(/*recurse=*/true)) out[p.key()] = p.value();
  for (const auto& b : m.named_buffers(/*recurse=*/true)) out[b.key()] = b.value();
  return out;
}

std::string shape(const Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}
}  // namespace

WarmStart warm_start(inn::ConditionalFlow& model, const std::string& checkpoint, const std::vector<std::string>& ignore) {
  auto source = io::load_flow_checkpoint(checkpoint);
  WarmStart w;
  w.path = source.path;
  auto from = named_tensors(*source.model), to = named_tensors(*model);
  torch::NoGradGuard no_grad;
  for (auto& [name, dst] : to) {
    auto it = from.find(name);
    if (it == from.end()) {
      w.fresh.push_back(name);
      continue;
    }
    if (ignored_by(name, ignore)) {
      w.ignored.push_back(name);
      continue;
    }
    const Tensor& src = it->second;
    if (!src.sizes().equals(dst.sizes()))
      throw ConfigError("train.init_from '" + source.path + "': tensor '" + name + "' is " + shape(src) +
                        " there but " + shape(dst) + " in this model (another architecture: list it in "
                        "train.init_ignore / --init-ignore to keep it initialised)");
    dst.copy_(src);
    w.loaded.push_back(name);
  }
  for (const auto& [name, src] : from)
    if (!to.count(name)) w.unused.push_back(name);
  // ActNorm caches that it was initialised: read the copied flags again.
  model->apply([](torch::nn::Module& m) {
    if (auto* a = dynamic_cast<inn::ActNormImpl*>(&m)) a->forget_cached_flag();
  });
  return w;
}

}  // namespace net2net::train
