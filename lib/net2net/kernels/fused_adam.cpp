#include "net2net/kernels/fused_adam.h"

#include "net2net/kernels/cpu/kernels.h"
#include "net2net/kernels/dispatch.h"

#include <atomic>
#include <cmath>
#include <map>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace net2net::kernels {
using torch::Tensor;

namespace {
// torch::optim's state map is keyed by the parameter's TensorImpl: as a string in LibTorch 1.x,
// as the pointer itself in 2.x. (The string is what c10::guts::to_string wrote: the address.)
template <typename Key>
Key state_key(const Tensor& p) {
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream out;
    out << p.unsafeGetTensorImpl();
    return out.str();
  } else {
    return p.unsafeGetTensorImpl();
  }
}
using StateMap = std::decay_t<decltype(std::declval<torch::optim::Optimizer&>().state())>;
using StateKey = StateMap::key_type;

#ifdef NET2NET_TORCH_CUDA
// Parameters of one device and type that ATen's fused Adam (_fused_adam_, one multi-tensor
// kernel for all of them) updates together.
struct CudaGroup {
  std::vector<Tensor> params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs;
  std::vector<float> steps;
};
#endif
}  // namespace

torch::optim::AdamParamState* adam_state(torch::optim::Optimizer& optimizer, const Tensor& p) {
  auto it = optimizer.state().find(state_key<StateKey>(p));
  return it == optimizer.state().end() ? nullptr : static_cast<torch::optim::AdamParamState*>(it->second.get());
}

Tensor FusedAdam::step(LossClosure closure) {
  torch::NoGradGuard no_grad;
  Tensor loss;
  if (closure) {
    at::AutoGradMode enable(true);
    loss = closure();
  }
  // The fused updates are collected and run as one parallel loop per type (cpu adam_many), or
  // one ATen fused kernel per group, device and type (CUDA).
  std::vector<cpu::AdamTensor<float>> f32;
  std::vector<cpu::AdamTensor<double>> f64;
  for (auto& group : param_groups_) {
    auto& o = static_cast<torch::optim::AdamOptions&>(group.options());
    const double b1 = std::get<0>(o.betas()), b2 = std::get<1>(o.betas());
#ifdef NET2NET_TORCH_CUDA
    std::map<std::pair<std::string, c10::ScalarType>, CudaGroup> cuda_groups;
#endif
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      const Tensor& grad = p.grad();
      const KernelPath path = grad.is_sparse() ? KernelPath::unfused : kernel_path({p, grad});
      const auto key = state_key<StateKey>(p);
      if (state_.find(key) == state_.end()) {
        auto st = std::make_unique<torch::optim::AdamParamState>();
        st->step(0);
        st->exp_avg(torch::zeros_like(p, at::MemoryFormat::Preserve));
        st->exp_avg_sq(torch::zeros_like(p, at::MemoryFormat::Preserve));
        if (o.amsgrad()) st->max_exp_avg_sq(torch::zeros_like(p, at::MemoryFormat::Preserve));
        state_[key] = std::move(st);
      }
      auto& st = static_cast<torch::optim::AdamParamState&>(*state_[key]);
      st.step(st.step() + 1);
      const double bc1 = 1 - std::pow(b1, st.step()), bc2 = 1 - std::pow(b2, st.step());
      const double step_size = o.lr() / bc1;
      const bool dense = p.is_contiguous() && grad.is_contiguous() && st.exp_avg().is_contiguous() &&
                         st.exp_avg_sq().is_contiguous();
      if (path == KernelPath::cpu && dense) {
        auto job = [&](auto* type_tag) {
          using T = std::remove_pointer_t<decltype(type_tag)>;
          return cpu::AdamTensor<T>{p.data_ptr<T>(), grad.data_ptr<T>(), st.exp_avg().data_ptr<T>(),
                                    st.exp_avg_sq().data_ptr<T>(), o.amsgrad() ? st.max_exp_avg_sq().data_ptr<T>() : nullptr,
                                    p.numel(), b1, b2, o.eps(), o.weight_decay(), step_size, std::sqrt(bc2)};
        };
        if (p.scalar_type() == torch::kFloat32) f32.push_back(job(static_cast<float*>(nullptr)));
        else f64.push_back(job(static_cast<double*>(nullptr)));
        continue;
      }
#ifdef NET2NET_TORCH_CUDA
      // ATen's fused Adam wants every tensor dense with the parameter's layout (else: torch's ops).
      if (path == KernelPath::cuda && dense && (!o.amsgrad() || st.max_exp_avg_sq().is_contiguous())) {
        auto& g = cuda_groups[{p.device().str(), p.scalar_type()}];
        g.params.push_back(p), g.grads.push_back(grad), g.exp_avgs.push_back(st.exp_avg());
        g.exp_avg_sqs.push_back(st.exp_avg_sq());
        if (o.amsgrad()) g.max_exp_avg_sqs.push_back(st.max_exp_avg_sq());
        g.steps.push_back(static_cast<float>(st.step()));
        continue;
      }
#endif
      // Other devices and layouts: torch's own sequence of ops.
      Tensor g = o.weight_decay() != 0 ? grad.add(p, o.weight_decay()) : grad;
      st.exp_avg().mul_(b1).add_(g, 1 - b1);
      st.exp_avg_sq().mul_(b2).addcmul_(g, g, 1 - b2);
      Tensor denom;
      if (o.amsgrad()) {
        torch::max_out(st.max_exp_avg_sq(), st.exp_avg_sq(), st.max_exp_avg_sq());
        denom = (st.max_exp_avg_sq().sqrt() / std::sqrt(bc2)).add_(o.eps());
      } else {
        denom = (st.exp_avg_sq().sqrt() / std::sqrt(bc2)).add_(o.eps());
      }
      p.addcdiv_(st.exp_avg(), denom, -step_size);
    }
#ifdef NET2NET_TORCH_CUDA
    for (auto& [where, g] : cuda_groups) {
      // The steps (already counted) as float32 scalars on the device, in one copy from pinned
      // memory that does not wait for the device.
      auto steps = torch::tensor(g.steps, torch::kFloat32).pin_memory().to(g.params[0].device(), /*non_blocking=*/true);
      std::vector<Tensor> step_views;
      for (int64_t i = 0; i < steps.size(0); ++i) step_views.push_back(steps[i]);
      at::_fused_adam_(g.params, g.grads, g.exp_avgs, g.exp_avg_sqs, g.max_exp_avg_sqs, step_views, o.lr(), b1, b2,
                       o.weight_decay(), o.eps(), o.amsgrad(), /*maximize=*/false);
    }
#endif
  }
  if (!f32.empty()) cpu::table<float>().adam_many(f32.data(), static_cast<int64_t>(f32.size()));
  if (!f64.empty()) cpu::table<double>().adam_many(f64.data(), static_cast<int64_t>(f64.size()));
  return loss;
}

namespace {
// Where the weight-gradient kernels record, while backward_recording_squares runs (an atomic, not
// thread-local: nothing guarantees that autograd runs the backward on the calling thread).
std::atomic<GradientSquares*> live_squares{nullptr};
}  // namespace

void backward_recording_squares(const Tensor& loss, GradientSquares& into) {
  struct Live {
    GradientSquares* previous;
    explicit Live(GradientSquares* s) : previous(live_squares.exchange(s)) {}
    ~Live() { live_squares.store(previous); }
  } live(&into);
  loss.backward();
}

std::optional<double> GradientSquares::find(const Tensor& grad) const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!grad.has_storage()) return std::nullopt;
  for (const auto& e : entries_)
    if (e.storage._unsafe_get_target() == grad.storage().unsafeGetStorageImpl() && e.offset == grad.storage_offset() &&
        grad.sizes() == c10::IntArrayRef(e.sizes) && grad.strides() == c10::IntArrayRef(e.strides) &&
        e.type == grad.scalar_type() && e.version == grad._version())
      return e.sum_squares;
  return std::nullopt;
}

size_t GradientSquares::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return entries_.size();
}

bool recording_gradient_squares() { return live_squares.load() != nullptr; }

void record_gradient_squares(const Tensor& grad, double sum_squares) {
  GradientSquares* live = live_squares.load();
  if (!live) return;
  std::lock_guard<std::mutex> lock(live->mutex_);
  live->entries_.push_back({grad.storage().getWeakStorageImpl(), grad.storage_offset(), grad.sizes().vec(),
                            grad.strides().vec(), grad.scalar_type(), grad._version(), sum_squares});
}

double gradient_norm(const std::vector<Tensor>& params, const GradientSquares* recorded) {
  std::vector<const float*> f32;
  std::vector<const double*> f64;
  std::vector<int64_t> n32, n64;
  std::vector<Tensor> others;
  double sq = 0;
  for (const auto& p : params) {
    const Tensor& g = p.grad();
    if (!g.defined()) continue;
    if (recorded) {
      if (auto v = recorded->find(g)) {
        sq += *v;
        continue;
      }
    }
    if (g.device().is_cpu() && g.is_contiguous() && !g.is_sparse() && g.scalar_type() == torch::kFloat32) {
      f32.push_back(g.data_ptr<float>()), n32.push_back(g.numel());
    } else if (g.device().is_cpu() && g.is_contiguous() && !g.is_sparse() && g.scalar_type() == torch::kFloat64) {
      f64.push_back(g.data_ptr<double>()), n64.push_back(g.numel());
    } else {
      others.push_back(g.norm().to(torch::kFloat64));  // a reduction, no squared copy of the gradient
    }
  }
  // The rest (CUDA gradients above all) summed where they are, read with one sync per device.
  std::map<std::string, std::vector<Tensor>> by_device;
  for (auto& n : others) by_device[n.device().str()].push_back(n);
  for (auto& [device, norms] : by_device) sq += torch::stack(norms).pow(2).sum().item<double>();
  if (!f32.empty()) sq += cpu::table<float>().sum_squares_many(f32.data(), n32.data(), static_cast<int64_t>(f32.size()));
  if (!f64.empty()) sq += cpu::table<double>().sum_squares_many(f64.data(), n64.data(), static_cast<int64_t>(f64.size()));
  return std::sqrt(sq);
}

void FusedAdam::clear_grads() {
  for (auto& group : param_groups_)
    for (auto& p : group.params()) p.mutable_grad().reset();
}

}  // namespace net2net::kernels
