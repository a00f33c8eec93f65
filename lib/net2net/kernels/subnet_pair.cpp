#include "net2net/kernels/subnet_pair.h"

#include <type_traits>

#include "net2net/kernels/cpu/kernels.h"
#include "net2net/kernels/dispatch.h"

namespace net2net::kernels {
using torch::Tensor;

int64_t PairParams::weight_elements() const {
  int64_t n = w_in.numel() + w_out.numel();
  for (const auto& w : w_hidden) n += w.numel();
  return n;
}

void PairParams::append_to(std::vector<Tensor>& flat) const {
  flat.push_back(w_in), flat.push_back(b_in);
  for (size_t k = 0; k < w_hidden.size(); ++k) flat.push_back(w_hidden[k]), flat.push_back(b_hidden[k]);
  flat.push_back(w_out), flat.push_back(b_out);
}

PairParams PairParams::read(const Tensor*& cursor, int64_t depth) {
  PairParams p;
  p.w_in = *cursor++, p.b_in = *cursor++;
  for (int64_t k = 0; k < depth; ++k) p.w_hidden.push_back(*cursor++), p.b_hidden.push_back(*cursor++);
  p.w_out = *cursor++, p.b_out = *cursor++;
  return p;
}

bool subnet_pair_fusable(const Tensor& x, const PairParams& p) {
  if (!fused_cpu({x, p.w_in}) || x.dim() != 2) return false;
  const int64_t bytes = p.weight_elements() * static_cast<int64_t>(x.element_size());
  const int width = cpu_vector_width(x.scalar_type());
  return bytes <= (1 << 20) && p.hidden() % width == 0 && p.out() % width == 0;
}

namespace {
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The data pointers of `ts` (T const for inputs).
template <typename T>
std::vector<T*> pointers(const std::vector<Tensor>& ts) {
  std::vector<T*> out;
  for (const auto& t : ts) out.push_back(t.data_ptr<std::remove_const_t<T>>());
  return out;
}

// (s, t) through the forward kernel; with `acts` (training) a0 [N, 2H] and the hidden
// activations [2, N, H] are kept there (after each LeakyReLU).
std::pair<Tensor, Tensor> pair_forward(const Tensor& x, const PairParams& p, std::vector<Tensor>* acts) {
  const int64_t depth = p.depth(), hidden = p.hidden(), n = x.size(0), out = p.b_out.size(1);
  const Tensor xc = x.contiguous(), w_in_t = p.w_in.t().contiguous(), b_in = p.b_in.contiguous();
  std::vector<Tensor> wh, bh;
  for (int64_t k = 0; k < depth; ++k) wh.push_back(p.w_hidden[k].contiguous()), bh.push_back(p.b_hidden[k].contiguous());
  const Tensor w_out = p.w_out.contiguous(), b_out = p.b_out.contiguous();
  if (acts) {
    acts->assign({torch::empty({n, 2 * hidden}, x.options())});
    for (int64_t k = 0; k < depth; ++k) acts->push_back(torch::empty({2, n, hidden}, x.options()));
  }
  Tensor s = torch::empty({n, out}, x.options()), t = torch::empty({n, out}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "subnet_pair_forward", [&] {
    auto wp = pointers<const scalar_t>(wh), bp = pointers<const scalar_t>(bh);
    std::vector<scalar_t*> ap;
    if (acts) ap = pointers<scalar_t>(std::vector<Tensor>(acts->begin() + 1, acts->end()));
    cpu::table<scalar_t>().subnet_pair_forward(
        xc.data_ptr<scalar_t>(), n, xc.size(1), w_in_t.data_ptr<scalar_t>(), b_in.data_ptr<scalar_t>(), hidden, depth,
        wp.data(), bp.data(), w_out.data_ptr<scalar_t>(), b_out.data_ptr<scalar_t>(), out, s.data_ptr<scalar_t>(),
        t.data_ptr<scalar_t>(), acts ? (*acts)[0].data_ptr<scalar_t>() : nullptr, acts ? ap.data() : nullptr);
  });
  return {s, t};
}

// Training through the fused kernels: the forward keeps x, the activations and s; the backward
// kernel gives the gradients at every pre-activation, from which each layer's weight gradient is
// one GEMM over the batch. params: a PairParams in its flat order.
struct SubnetPairFn : public torch::autograd::Function<SubnetPairFn> {
  static variable_list forward(AutogradContext* ctx, Tensor x, at::TensorList params) {
    const int64_t depth = PairParams::depth_of(static_cast<int64_t>(params.size()));
    const Tensor* cursor = params.data();
    const PairParams p = PairParams::read(cursor, depth);
    std::vector<Tensor> acts;  // a0, then the hidden activations
    auto [s, t] = pair_forward(x, p, &acts);
    // Saved: x, w_in, w_out, s, a0, the hidden activations, the hidden weights.
    std::vector<Tensor> saved = {x.contiguous(), p.w_in.contiguous(), p.w_out.contiguous(), s};
    for (auto& a : acts) saved.push_back(a);
    for (const auto& w : p.w_hidden) saved.push_back(w.contiguous());
    ctx->save_for_backward(saved);
    ctx->saved_data["depth"] = depth;
    return {s, t};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const int64_t depth = ctx->saved_data["depth"].toInt();
    const Tensor &x = saved[0], &w_in = saved[1], &w_out = saved[2], &s = saved[3], &a0 = saved[4];
    const std::vector<Tensor> acts(saved.begin() + 5, saved.begin() + 5 + depth),
        wh(saved.begin() + 5 + depth, saved.begin() + 5 + 2 * depth);
    const int64_t n = x.size(0), out = s.size(1), hidden = w_in.size(0) / 2;
    const Tensor gs = grads[0].contiguous(), gt = grads[1].contiguous();
    Tensor g_out = torch::empty({2, n, out}, x.options()), g_a0 = torch::empty({n, 2 * hidden}, x.options());
    std::vector<Tensor> g_hidden;
    for (int64_t k = 0; k < depth; ++k) g_hidden.push_back(torch::empty({2, n, hidden}, x.options()));
    // The weights as [out, in]: the products with them are then the nn kernel's (small: copied).
    std::vector<Tensor> wh_t;
    for (const auto& w : wh) wh_t.push_back(w.transpose(1, 2).contiguous());
    const Tensor w_out_t = w_out.transpose(1, 2).contiguous();
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "subnet_pair_backward", [&] {
      auto wp = pointers<const scalar_t>(wh_t), ap = pointers<const scalar_t>(acts);
      auto gp = pointers<scalar_t>(g_hidden);
      cpu::table<scalar_t>().subnet_pair_backward(n, hidden, depth, wp.data(), w_out_t.data_ptr<scalar_t>(), out,
                                                  s.data_ptr<scalar_t>(), a0.data_ptr<scalar_t>(), ap.data(),
                                                  gs.data_ptr<scalar_t>(), gt.data_ptr<scalar_t>(),
                                                  g_out.data_ptr<scalar_t>(), gp.data(), g_a0.data_ptr<scalar_t>());
    });
    // Each layer's input: a0 as the pair [2, n, H] (a view), then the hidden activations.
    auto input_of = [&](int64_t layer) { return layer == 0 ? a0.view({n, 2, hidden}).transpose(0, 1) : acts[layer - 1]; };
    PairParams g;
    g.w_in = torch::mm(g_a0.t(), x);
    g.b_in = g_a0.sum(0);
    for (int64_t k = 0; k < depth; ++k) {
      g.w_hidden.push_back(torch::bmm(input_of(k).transpose(1, 2), g_hidden[k]));
      g.b_hidden.push_back(g_hidden[k].sum(1));
    }
    g.w_out = torch::bmm(input_of(depth).transpose(1, 2), g_out);
    g.b_out = g_out.sum(1);
    variable_list result = {ctx->needs_input_grad(0) ? torch::mm(g_a0, w_in) : Tensor()};
    g.append_to(result);
    return result;
  }
};
}  // namespace

std::pair<Tensor, Tensor> subnet_pair(const Tensor& x, const PairParams& p) {
  if (torch::GradMode::is_enabled()) {
    std::vector<Tensor> flat;
    p.append_to(flat);
    auto st = SubnetPairFn::apply(x, at::TensorList(flat));
    return {st[0], st[1]};
  }
  return pair_forward(x, p, nullptr);  // inference: no activations kept
}

}  // namespace net2net::kernels
