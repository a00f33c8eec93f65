// The GPU path. The dispatch decision runs everywhere (CPU tensors take the CPU kernels; CUDA
// tensors take the CUDA kernels where this binary was built against a CUDA LibTorch, else the
// op-by-op path). The rest compares the CUDA kernels with the CPU ones on the same data (values,
// gradients, inverses, float and double; a whole flow; the optimizer) and skips where no GPU is
// visible: scripts/gpu_check.sh runs it on a machine with one.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <functional>

#ifdef NET2NET_TORCH_CUDA
#include <ATen/autocast_mode.h>
#endif

#include "net2net/config/cinn_config.h"
#include "net2net/inn/flow.h"
#include "net2net/kernels/affine_coupling.h"
#include "net2net/kernels/dispatch.h"
#include "net2net/kernels/fused_adam.h"
#include "net2net/kernels/norm_activation.h"
#include "net2net/train/precision.h"

namespace net2net {
namespace {
using kernels::KernelPath;
using torch::Tensor;

double max_abs(const Tensor& a) { return a.abs().max().item<double>(); }
// max |a - b| / (1 + max |b|), with b moved to a's device and type.
double rel_diff(const Tensor& a, const Tensor& b) {
  auto bb = b.to(a.device(), a.scalar_type());
  return max_abs(a - bb) / (1 + max_abs(bb));
}
double tolerance(torch::Dtype t) { return t == torch::kFloat64 ? 1e-10 : 2e-5; }

#define NET2NET_NEEDS_GPU()                                                   \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device visible"; \
  static_assert(true, "")

TEST(KernelDispatch, CpuFloatAndDoubleTensorsTakeTheCpuKernels) {
  EXPECT_EQ(kernels::kernel_path(c10::DeviceType::CPU, torch::kFloat32), KernelPath::cpu);
  EXPECT_EQ(kernels::kernel_path(c10::DeviceType::CPU, torch::kFloat64), KernelPath::cpu);
  EXPECT_EQ(kernels::kernel_path(c10::DeviceType::CPU, torch::kBFloat16), KernelPath::unfused);
  auto x = torch::randn({4, 3}), s = torch::randn({4, 3});
  EXPECT_EQ(kernels::kernel_path({x, s}), KernelPath::cpu);
  EXPECT_EQ(kernels::kernel_path({x, s.to(torch::kFloat64)}), KernelPath::unfused);  // mixed types
  EXPECT_EQ(kernels::kernel_path({x, Tensor()}), KernelPath::unfused);
  kernels::set_fused(false);
  EXPECT_EQ(kernels::kernel_path({x, s}), KernelPath::unfused);
  EXPECT_EQ(kernels::kernel_path(c10::DeviceType::CUDA, torch::kFloat32), KernelPath::unfused);
  kernels::set_fused(true);
}

TEST(KernelDispatch, CudaTensorsTakeTheCudaKernelsWhereLibTorchHasCuda) {
#ifdef NET2NET_TORCH_CUDA
  EXPECT_TRUE(kernels::cuda_kernels_built());
  EXPECT_EQ(kernels::kernel_path(c10::DeviceType::CUDA, torch::kFloat32), KernelPath::cuda);
  EXPECT_EQ(kernels::kernel_path(c10::DeviceType::CUDA, torch::kFloat64), KernelPath::cuda);
#else
  EXPECT_FALSE(kernels::cuda_kernels_built());
  EXPECT_EQ(kernels::kernel_path(c10::DeviceType::CUDA, torch::kFloat32), KernelPath::unfused);
#endif
  EXPECT_EQ(kernels::kernel_path(c10::DeviceType::CUDA, torch::kHalf), KernelPath::unfused);
  EXPECT_STREQ(kernels::to_string(KernelPath::cuda), "cuda");
}

TEST(Precision, NamesAreCheckedAndFp32IsTheDefault) {
  EXPECT_EQ(train::parse_precision("fp32"), train::Precision::fp32);
  EXPECT_EQ(train::parse_precision("tf32"), train::Precision::tf32);
  EXPECT_EQ(train::parse_precision("bf16"), train::Precision::bf16);
  EXPECT_THROW(train::parse_precision("fp16"), std::exception);
  // Only fp32 runs on the CPU; the others say what they need.
  EXPECT_NO_THROW(train::check_precision(train::Precision::fp32, torch::Device("cpu")));
  for (auto p : {train::Precision::tf32, train::Precision::bf16}) {
    try {
      train::check_precision(p, torch::Device("cpu"));
      ADD_FAILURE() << "accepted on the cpu";
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find("train.precision"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("cuda"), std::string::npos) << e.what();
    }
  }
}

// ------------------------------------------------------------------ CUDA against CPU (GPU only)
// Built where LibTorch has CUDA (without it there is nothing to compare); skipped without a GPU.
#ifdef NET2NET_TORCH_CUDA
TEST(CudaKernels, CouplingEqualsTheCpuKernelsInValuesGradientsAndInverse) {
  NET2NET_NEEDS_GPU();
  for (auto type : {torch::kFloat64, torch::kFloat32})
    for (int64_t d : {1, 7, 134, 300}) {  // one column, odd, the reference widths, past one block
      SCOPED_TRACE(std::string(c10::toString(type)) + " d " + std::to_string(d));
      torch::manual_seed(d);
      auto o = torch::TensorOptions().dtype(type);
      auto x = torch::randn({37, d}, o), s = torch::randn({37, d}, o) * 0.7, t = torch::randn({37, d}, o);
      auto w = torch::randn({37, d}, o), u = torch::randn({37}, o);
      std::vector<Tensor> grads[2], outs[2];
      for (int dev = 0; dev < 2; ++dev) {
        auto on = [&](const Tensor& a) { return a.to(dev ? torch::kCUDA : torch::kCPU).requires_grad_(true); };
        auto xi = on(x), si = on(s), ti = on(t);
        EXPECT_EQ(kernels::kernel_path({xi, si, ti}), dev ? KernelPath::cuda : KernelPath::cpu);
        auto [y, ld] = kernels::affine_coupling(xi, si, ti);
        grads[dev] = torch::autograd::grad({(y * w.to(y.device())).sum() + (ld * u.to(y.device())).sum()}, {xi, si, ti});
        torch::NoGradGuard g;
        outs[dev] = {y, ld, kernels::affine_coupling_inverse(y, si, ti)};
      }
      for (int i = 0; i < 3; ++i) {
        EXPECT_LT(rel_diff(outs[1][i].cpu(), outs[0][i]), tolerance(type)) << "output " << i;
        EXPECT_LT(rel_diff(grads[1][i].cpu(), grads[0][i]), tolerance(type)) << "gradient " << i;
      }
    }
}

TEST(CudaKernels, NormLeakyReluEqualsTheCpuKernelsInValuesGradientsAndInverse) {
  NET2NET_NEEDS_GPU();
  for (auto type : {torch::kFloat64, torch::kFloat32})
    for (int64_t n : {1, 37, 1000})  // row counts below and past the backward's 8 row lanes
      for (int64_t d : {3, 33, 268}) {
        SCOPED_TRACE(std::string(c10::toString(type)) + " n " + std::to_string(n) + " d " + std::to_string(d));
        torch::manual_seed(n * 7 + d);
        auto o = torch::TensorOptions().dtype(type);
        auto x = torch::randn({n, d}, o), loc = torch::randn({d}, o), scale = torch::randn({d}, o);
        auto w = torch::randn({n, d}, o), u = torch::randn({n}, o);
        std::vector<Tensor> grads[2], outs[2];
        for (int dev = 0; dev < 2; ++dev) {
          auto on = [&](const Tensor& a) { return a.to(dev ? torch::kCUDA : torch::kCPU).requires_grad_(true); };
          auto xi = on(x), li = on(loc), si = on(scale);
          ASSERT_TRUE(kernels::norm_leaky_relu_fusable(xi, li, si));
          auto [y, ld] = kernels::norm_leaky_relu(xi, li, si, 0.9);
          grads[dev] = torch::autograd::grad({(y * w.to(y.device())).sum() + (ld * u.to(y.device())).sum()}, {xi, li, si});
          torch::NoGradGuard g;
          outs[dev] = {y, ld, kernels::norm_leaky_relu_inverse(y, li, si, 0.9)};
        }
        for (int i = 0; i < 3; ++i) {
          EXPECT_LT(rel_diff(outs[1][i].cpu(), outs[0][i]), tolerance(type)) << "output " << i;
          // Column sums over up to 1000 rows in another order: float rounding grows with n.
          EXPECT_LT(rel_diff(grads[1][i].cpu(), grads[0][i]), tolerance(type) * (type == torch::kFloat32 ? 10 : 1))
              << "gradient " << i;
        }
      }
}

// The same model (its state copied) on both devices: the whole-flow CPU kernels against the
// per-layer CUDA ones, forward, backward and inverse.
TEST(CudaKernels, AFlowGivesTheSameValuesGradientsAndSamplesOnBothDevices) {
  NET2NET_NEEDS_GPU();
  for (auto type : {torch::kFloat64, torch::kFloat32}) {
    SCOPED_TRACE(c10::toString(type));
    config::FlowConfig cfg = config::default_flow_config(16, 10);
    cfg.embedding_dim = 8, cfg.n_flows = 6, cfg.hidden_dim = 64;
    cfg.hidden_depth = 2, cfg.activation = "lrelu", cfg.permutation_seed = 3;
    auto cpu_model = inn::build_flow(cfg, 7), gpu_model = inn::build_flow(cfg, 7);
    inn::convert_floating(*cpu_model, type), inn::convert_floating(*gpu_model, type);
    torch::manual_seed(1);
    auto o = torch::TensorOptions().dtype(type);
    auto x = torch::randn({64, 16}, o) * 1.5 + 0.3, c = torch::randn({64, 10}, o);
    {
      torch::NoGradGuard g;
      cpu_model->train();
      cpu_model->forward(x, c);  // ActNorm's data-dependent init, then the same state on the GPU
      auto src = cpu_model->named_parameters(), dst = gpu_model->named_parameters();
      for (const auto& p : src) dst[p.key()].copy_(p.value());
      auto bsrc = cpu_model->named_buffers(), bdst = gpu_model->named_buffers();
      for (const auto& b : bsrc) bdst[b.key()].copy_(b.value());
    }
    gpu_model->to(torch::kCUDA);
    std::vector<Tensor> results[2];
    for (int dev = 0; dev < 2; ++dev) {
      auto& m = dev ? gpu_model : cpu_model;
      auto xd = x.to(dev ? torch::kCUDA : torch::kCPU), cd = c.to(xd.device());
      m->train();
      auto out = m->forward(xd, cd);
      auto loss = inn::nll_loss(out, 1.0 / out.v.size(0)).loss;
      auto params = m->parameters();
      auto g = torch::autograd::grad({loss}, params);
      results[dev] = {out.v, out.logdet};
      for (auto& gi : g) results[dev].push_back(gi);
      torch::NoGradGuard ng;
      m->eval();
      results[dev].push_back(m->inverse(torch::randn({64, 16}, o.device(xd.device())).mul_(0).add_(0.5), cd));
    }
    for (size_t i = 0; i < results[0].size(); ++i)
      EXPECT_LT(rel_diff(results[1][i].cpu(), results[0][i]), type == torch::kFloat64 ? 1e-9 : 1e-3) << "result " << i;
  }
}

TEST(CudaKernels, FusedAdamStepsEqualTheCpuSteps) {
  NET2NET_NEEDS_GPU();
  for (bool amsgrad : {true, false}) {
    SCOPED_TRACE(amsgrad);
    torch::manual_seed(3);
    std::vector<Tensor> a = {torch::randn({37, 5}, torch::kFloat64), torch::randn({1000}, torch::kFloat64)}, b;
    for (auto& t : a) t.requires_grad_(true), b.push_back(t.detach().to(torch::kCUDA).requires_grad_(true));
    auto opts = torch::optim::AdamOptions(1e-2).betas({0.5, 0.9}).amsgrad(amsgrad).weight_decay(0.01);
    kernels::FusedAdam on_cpu(a, opts), on_gpu(b, opts);
    for (int step = 0; step < 5; ++step) {
      auto loss = [&](const std::vector<Tensor>& ps) { return ps[0].pow(2).sum() + ps[1].tanh().sum() * (step + 1); };
      on_cpu.clear_grads(), on_gpu.clear_grads();
      loss(a).backward(), loss(b).backward();
      EXPECT_NEAR(kernels::gradient_norm(b), kernels::gradient_norm(a), 1e-9 * kernels::gradient_norm(a));
      on_cpu.step(), on_gpu.step();
      for (size_t i = 0; i < a.size(); ++i) EXPECT_LT(rel_diff(b[i].detach().cpu(), a[i].detach()), 1e-12) << step << " " << i;
    }
    EXPECT_EQ(kernels::adam_state(on_gpu, b[0])->step(), 5);
  }
}

TEST(CudaKernels, Bf16AutocastKeepsTheLogDetAndLossInFloat32) {
  NET2NET_NEEDS_GPU();
  config::FlowConfig cfg = config::default_flow_config(16, 10);
  cfg.embedding_dim = 8, cfg.n_flows = 4, cfg.hidden_dim = 64;
  cfg.hidden_depth = 1, cfg.activation = "lrelu", cfg.permutation_seed = 3;
  auto model = inn::build_flow(cfg, 7);
  model->to(torch::kCUDA);
  auto x = torch::randn({32, 16}, torch::kCUDA), c = torch::randn({32, 10}, torch::kCUDA);
  inn::FlowOutput ref = model->forward(x, c), low;
  {
    train::AutocastScope scope(train::Precision::bf16, torch::Device(torch::kCUDA));
    EXPECT_TRUE(at::autocast::is_autocast_enabled(at::kCUDA));
    low = model->forward(x, c);
  }
  EXPECT_FALSE(at::autocast::is_autocast_enabled(at::kCUDA)) << "autocast left on after its scope";
  EXPECT_EQ(low.v.scalar_type(), torch::kFloat32);
  EXPECT_EQ(low.logdet.scalar_type(), torch::kFloat32);
  // bf16 matmuls (8 bits of mantissa) in the subnets: close, not equal.
  EXPECT_LT(rel_diff(low.v, ref.v), 0.1);
  EXPECT_GT(max_abs(low.v - ref.v), 0.0);
  // The backward follows: float32 gradients for the float32 parameters, all finite.
  auto loss = inn::nll_loss(low, 1.0 / low.v.size(0)).loss;
  loss.backward();
  for (const auto& p : model->parameters()) {
    ASSERT_TRUE(p.grad().defined());
    EXPECT_EQ(p.grad().scalar_type(), torch::kFloat32);
    EXPECT_TRUE(torch::isfinite(p.grad()).all().item<bool>());
  }
}

TEST(CudaKernels, Tf32IsOnInItsScopeAndRestoredAfter) {
  NET2NET_NEEDS_GPU();
  const bool before = at::globalContext().allowTF32CuBLAS();
  {
    train::MatmulPrecisionScope scope(train::Precision::tf32, torch::Device(torch::kCUDA));
    EXPECT_TRUE(at::globalContext().allowTF32CuBLAS());
    train::MatmulPrecisionScope none(train::Precision::bf16, torch::Device(torch::kCUDA));  // not tf32: no change
    EXPECT_TRUE(at::globalContext().allowTF32CuBLAS());
  }
  EXPECT_EQ(at::globalContext().allowTF32CuBLAS(), before);
}

#endif  // NET2NET_TORCH_CUDA

}  // namespace
}  // namespace net2net
