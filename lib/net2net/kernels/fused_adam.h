// Adam / AMSGrad with a fused update: one pass over each parameter's five arrays (p, g, m, v,
// vmax) instead of LibTorch 1.13's eight tensor ops per parameter, so the optimizer step, about
// half of a large config's training step, reads and writes the memory once. It keeps
// torch::optim::Adam's state objects, so checkpoints (Adam::save / load) are unchanged.
#pragma once
#include <torch/torch.h>

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

// The L2 norm of all defined gradients of `params` (the training log's grad_norm): CPU float /
// double contiguous gradients in one parallel pass (cpu sum_squares_many), others by torch's
// norm. One loop instead of a reduction and a sync per tensor (~300 on the example's models).
double gradient_norm(const std::vector<torch::Tensor>& params);

}  // namespace net2net::kernels
