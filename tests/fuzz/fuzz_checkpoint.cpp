// fuzz_checkpoint: the checkpoint loader of net2net-translate, net2net-eval nll and --resume,
// io::load_flow_checkpoint (LibTorch's zip + pickle archive, the content checksum, the config,
// the model rebuilt from it and its state loaded), then what those tools do with the model: the
// forward pass (eval nll, transfer) and the inverse (sampling) on three rows, without gradients,
// as they run them (the fused CPU kernels where the shapes allow).
//
// Input: the bytes of the checkpoint file.
//
// Findings: sanitizer reports (also inside LibTorch's readers), any exception but net2net::Error
// from the loader, and a model that loaded but cannot run (an exception from forward / inverse:
// the loader accepted a state that does not fit its config). NET2NET_FUZZ_LOAD_ONLY=1 skips the
// forward and inverse passes.
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <cstdlib>
#include <string>

#include "fuzz_common.h"
#include "net2net/io/checkpoint.h"

namespace {
using net2net::fuzz::finding;
using net2net::fuzz::run_guarded;

constexpr int64_t kMaxDim = 1 << 16;  // wider models are loaded, not run (time)

const net2net::fuzz::Scratch& scratch() {
  static const net2net::fuzz::Scratch s("fuzz_checkpoint");
  return s;
}

bool load_only() {
  static const bool v = [] {
    const char* e = std::getenv("NET2NET_FUZZ_LOAD_ONLY");
    return e && *e && std::string(e) != "0";
  }();
  return v;
}
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);
  torch::set_num_threads(1);
  scratch();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = scratch().path("checkpoint.pt");
  net2net::fuzz::write_file(path, data, size);

  net2net::io::LoadedFlow loaded;
  if (!run_guarded("io::load_flow_checkpoint", [&] { loaded = net2net::io::load_flow_checkpoint(path); })) return 0;
  if (!loaded.model) finding("io::load_flow_checkpoint", "returned no model");
  if (load_only()) return 0;

  const auto& cfg = loaded.model->config();
  if (cfg.in_dim < 1 || cfg.cond_dim < 1) finding("io::load_flow_checkpoint", "a model with in_dim or cond_dim < 1");
  if (cfg.in_dim > kMaxDim || cfg.cond_dim > kMaxDim) return 0;
  // The dtype the checkpoint was written in (float32 or float64), as write_model records it.
  auto dtype = torch::kFloat32;
  const auto params = loaded.model->embedder->parameters();
  if (!params.empty() && params.front().scalar_type() == torch::kFloat64) dtype = torch::kFloat64;

  // Only net2net::Error may stop them (none is expected); c10::Error here means the loader let
  // a model through that does not fit its own config.
  run_guarded("forward / inverse of a loaded model", [&] {
    torch::NoGradGuard no_grad;
    auto gen = at::detail::createCPUGenerator(1);
    const auto opts = torch::TensorOptions().dtype(dtype);
    const auto x = at::randn({3, cfg.in_dim}, gen, opts), cond = at::randn({3, cfg.cond_dim}, gen, opts);
    auto out = loaded.model->forward(x, cond);
    if (!out.v.defined() || out.v.sizes() != x.sizes() || !out.logdet.defined() || out.logdet.numel() != 3)
      finding("ConditionalFlow::forward", "output of the wrong shape");
    auto z = loaded.model->inverse(torch::zeros_like(x), cond);
    if (!z.defined() || z.sizes() != x.sizes()) finding("ConditionalFlow::inverse", "output of the wrong shape");
  });
  return 0;
}
