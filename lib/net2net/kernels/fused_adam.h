// Adam / AMSGrad with a fused update: one pass over each parameter's five arrays (p, g, m, v,
// vmax) instead of LibTorch 1.13's eight tensor ops per parameter, so the optimizer step, about
// half of a large config's training step, reads and writes the memory once. CPU: our kernels
// (cpu adam_many); CUDA: ATen's own fused multi-tensor Adam (_fused_adam_, LibTorch 2.x); other
// devices: torch's ops. It keeps torch::optim::Adam's state objects, so checkpoints
// (Adam::save / load) are unchanged.
#pragma once
#include <torch/torch.h>

#include <mutex>
#include <optional>
#include <vector>

namespace net2net::kernels {

class FusedAdam : public torch::optim::Adam {
 public:
  using torch::optim::Adam::Adam;
  torch::Tensor step(LossClosure closure = nullptr) override;
  // Drops the parameters' gradients (torch's zero_grad(set_to_none=True); LibTorch 1.13's
  // Optimizer::zero_grad only zeroes them). The next backward pass then hands its gradients over
  // instead of adding them to zeroed buffers: on text2biggan that saves a 1 GB fill and a
  // read-read-write pass over 1 GB (AccumulateGrad's add_) each step.
  void clear_grads();
};

// The Adam state of parameter p in `optimizer` (null before its first step): the lookup that
// differs between LibTorch 1.x and 2.x.
torch::optim::AdamParamState* adam_state(torch::optim::Optimizer& optimizer, const torch::Tensor& p);

// Sums of squares of weight gradients taken as the backward kernels wrote them (the tn kernel
// holds each value in a register once): backward_recording_squares fills one during a backward
// pass, and gradient_norm(params, &it) takes the recorded value instead of reading the gradient
// again (1 GB a step on text2biggan). A value counts only for the same storage, offset, size and
// version: a gradient that is added to, scaled or all-reduced in place afterwards is read again.
class GradientSquares {
 public:
  GradientSquares() = default;
  GradientSquares(const GradientSquares&) = delete;
  GradientSquares& operator=(const GradientSquares&) = delete;
  // The recorded sum of squares of `grad` as it is now, if any.
  std::optional<double> find(const torch::Tensor& grad) const;
  size_t size() const;

 private:
  struct Entry {
    // A weak reference: the StorageImpl's address stays taken (no other storage can match by
    // reuse) while the gradient itself is not held, so autograd can still hand it over to
    // .grad instead of copying it (it does only for a gradient nothing else references).
    c10::weak_intrusive_ptr<c10::StorageImpl> storage;
    int64_t offset;
    std::vector<int64_t> sizes, strides;
    c10::ScalarType type;
    int64_t version;
    double sum_squares;
  };
  friend void record_gradient_squares(const torch::Tensor& grad, double sum_squares);
  mutable std::mutex mutex_;
  std::vector<Entry> entries_;
};
// loss.backward(), during which (and only then) the short-batch linear layers' weight-gradient
// kernels (kernels/batched_linear) record each gradient's sum of squares into `into`.
void backward_recording_squares(const torch::Tensor& loss, GradientSquares& into);
// For those kernels: whether a backward_recording_squares is running (they then compute the
// sums), and the recording.
bool recording_gradient_squares();
void record_gradient_squares(const torch::Tensor& grad, double sum_squares);

// The L2 norm of all defined gradients of `params` (the training log's grad_norm): recorded sums
// of squares where `recorded` has them, other CPU float / double contiguous gradients in one
// parallel pass (cpu sum_squares_many), others (CUDA) by torch's norms summed on their device and
// read once. One loop instead of a reduction and a sync per tensor (~300 on the example's models).
double gradient_norm(const std::vector<torch::Tensor>& params, const GradientSquares* recorded = nullptr);

}  // namespace net2net::kernels
