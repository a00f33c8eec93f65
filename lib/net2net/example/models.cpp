#include "net2net/example/models.h"

#include <cmath>

#include "net2net/core/atomic_file.h"
#include "net2net/core/error.h"

namespace net2net::example {

namespace {
// Kaiming-uniform weights and small uniform biases, as torch's default layer init.
void add_param(torch::jit::Module& m, const std::string& name, std::vector<int64_t> shape, int64_t fan_in) {
  double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  m.register_parameter(name, torch::empty(shape).uniform_(-bound, bound), /*is_buffer=*/false);
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) s.replace(p, from.size(), to);
  return s;
}
}  // namespace

torch::jit::Module make_autoencoder(int64_t latent, int64_t c, uint64_t seed) {
  torch::manual_seed(seed);
  torch::jit::Module m("Net2NetAutoencoder");
  // encoder: 28 -> 14 -> 7, then linear to the latent; decoder mirrors it.
  add_param(m, "e1_w", {c, 1, 4, 4}, 16);
  add_param(m, "e1_b", {c}, 16);
  add_param(m, "e2_w", {2 * c, c, 4, 4}, c * 16);
  add_param(m, "e2_b", {2 * c}, c * 16);
  add_param(m, "e3_w", {latent, 2 * c * 49}, 2 * c * 49);
  add_param(m, "e3_b", {latent}, 2 * c * 49);
  add_param(m, "d1_w", {2 * c * 49, latent}, latent);
  add_param(m, "d1_b", {2 * c * 49}, latent);
  add_param(m, "d2_w", {2 * c, c, 4, 4}, 2 * c * 16);
  add_param(m, "d2_b", {c}, 2 * c * 16);
  add_param(m, "d3_w", {c, 1, 4, 4}, c * 16);
  add_param(m, "d3_b", {1}, c * 16);
  m.register_attribute("latent_dim", c10::IntType::get(), latent);
  std::string src = R"(
def lrelu(self, h):
    return torch.where(h > 0, h, h * 0.2)
def encode(self, x):
    h = self.lrelu(torch.conv2d(x, self.e1_w, self.e1_b, [2, 2], [1, 1]))
    h = self.lrelu(torch.conv2d(h, self.e2_w, self.e2_b, [2, 2], [1, 1]))
    return torch.matmul(h.flatten(1), self.e3_w.t()) + self.e3_b
def decode(self, z):
    h = self.lrelu(torch.matmul(z, self.d1_w.t()) + self.d1_b)
    h = h.view([-1, C2, 7, 7])
    h = self.lrelu(torch.conv_transpose2d(h, self.d2_w, self.d2_b, [2, 2], [1, 1]))
    return torch.tanh(torch.conv_transpose2d(h, self.d3_w, self.d3_b, [2, 2], [1, 1]))
def forward(self, x):
    return self.decode(self.encode(x))
)";
  m.define(replace_all(src, "C2", std::to_string(2 * c)));
  return m;
}

torch::jit::Module make_classifier(int64_t c, int64_t hidden, int64_t classes, uint64_t seed) {
  torch::manual_seed(seed);
  torch::jit::Module m("Net2NetClassifier");
  add_param(m, "c1_w", {c, 1, 3, 3}, 9);
  add_param(m, "c1_b", {c}, 9);
  add_param(m, "c2_w", {2 * c, c, 3, 3}, c * 9);
  add_param(m, "c2_b", {2 * c}, c * 9);
  add_param(m, "f1_w", {hidden, 2 * c * 49}, 2 * c * 49);
  add_param(m, "f1_b", {hidden}, 2 * c * 49);
  add_param(m, "f2_w", {classes, hidden}, hidden);
  add_param(m, "f2_b", {classes}, hidden);
  m.define(R"(
def lrelu(self, h):
    return torch.where(h > 0, h, h * 0.2)
def block1(self, x):
    return torch.max_pool2d(self.lrelu(torch.conv2d(x, self.c1_w, self.c1_b, [1, 1], [1, 1])), [2, 2])
def block2(self, x):
    return torch.max_pool2d(self.lrelu(torch.conv2d(self.block1(x), self.c2_w, self.c2_b, [1, 1], [1, 1])), [2, 2])
def stage1(self, x):
    return torch.max_pool2d(self.block1(x), [2, 2]).flatten(1)
def stage2(self, x):
    return torch.max_pool2d(self.block2(x), [2, 2]).flatten(1)
def features(self, x):
    return self.lrelu(torch.matmul(self.block2(x).flatten(1), self.f1_w.t()) + self.f1_b)
def stage3(self, x):
    return self.features(x)
def encode(self, x):
    return self.features(x)
def forward(self, x):
    return torch.matmul(self.features(x), self.f2_w.t()) + self.f2_b
)");
  return m;
}

void save_module(torch::jit::Module& module, const std::string& path) {
  write_atomically(path, [&](const std::string& tmp) {
    try {
      module.save(tmp);
    } catch (const c10::Error& e) {
      throw IoError("cannot write TorchScript module '" + tmp + "': " + e.what_without_backtrace());
    }
  });
}

}  // namespace net2net::example
