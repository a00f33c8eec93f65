#include "net2net/kernels/fused_flow.h"

#include <deque>
#include <memory>

#include "net2net/kernels/cpu/kernels.h"
#include "net2net/kernels/dispatch.h"

namespace net2net::kernels {
using torch::Tensor;

void BlockParams::append_to(std::vector<Tensor>& flat) const {
  flat.push_back(loc), flat.push_back(scale);
  st0.append_to(flat);
  st1.append_to(flat);
}

BlockParams BlockParams::read(const Tensor*& cursor, int64_t depth) {
  BlockParams b;
  b.loc = *cursor++, b.scale = *cursor++;
  b.st0 = PairParams::read(cursor, depth);
  b.st1 = PairParams::read(cursor, depth);
  return b;
}

bool flow_fusable(const FlowParams& p, const Tensor& x, const std::vector<Tensor>& conds, bool forward) {
  if (!fused_cpu({x}) || p.blocks.empty() || x.dim() != 2) return false;
  const bool grad = torch::GradMode::is_enabled();
  if (!forward && grad) return false;
  const int width = cpu_vector_width(x.scalar_type());
  for (size_t i = 0; i < p.blocks.size(); ++i) {
    const BlockParams& b = p.blocks[i];
    if (!fused_cpu({x, conds[i], b.loc, b.scale}) || !subnet_pair_fusable(x, b.st0) || !subnet_pair_fusable(x, b.st1))
      return false;
    if (forward && grad && (b.st0.in() % width != 0 || b.st1.in() % width != 0)) return false;
  }
  return true;
}

namespace {
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// What the kernels read, as raw pointers into contiguous tensors held here; the transposed
// weights go to one scratch tensor, filled by one parallel kernel call (finish()).
template <typename T>
struct KernelWeights {
  std::vector<Tensor> keep;                  // contiguous tensors the kernel reads
  std::deque<std::vector<const T*>> layers;  // per pair: w_hidden, b_hidden[, w_hidden_t] pointers
  std::vector<cpu::FlowBlockWeights<T>> blocks;
  Tensor scratch;  // the transposed copies, carved in order
  T* next = nullptr;
  std::vector<const T*> t_src;
  std::vector<T*> t_dst;
  std::vector<int64_t> t_rows, t_cols;

  // Elements of the transposed copies that add_block will want: w_in per pair and, for the
  // backward pass, the hidden and output weights.
  static int64_t scratch_elements(const FlowParams& p, bool transposes) {
    int64_t total = 0;
    for (const auto& b : p.blocks)
      for (const PairParams* pair : {&b.st0, &b.st1}) {
        total += pair->w_in.numel();
        if (!transposes) continue;
        for (const auto& w : pair->w_hidden) total += w.numel();
        total += pair->w_out.numel();
      }
    return total;
  }
  KernelWeights(const FlowParams& p, bool transposes) {
    scratch = torch::empty({scratch_elements(p, transposes)}, p.blocks.front().loc.options());
    next = scratch.data_ptr<T>();
  }
  const T* hold(const Tensor& t) {
    keep.push_back(t.contiguous());
    return keep.back().data_ptr<T>();
  }
  const int64_t* index(const Tensor& t) {
    keep.push_back(t.contiguous());
    return keep.back().data_ptr<int64_t>();
  }
  // m [.., rows, cols] (a batch of matrices) transposed into the scratch: [.., cols, rows].
  const T* transposed(const Tensor& m) {
    const T* src = hold(m);
    T* dst = next;
    const int64_t rows = m.size(-2), cols = m.size(-1);
    for (int64_t i = 0; i < m.numel() / (rows * cols); ++i) {
      t_src.push_back(src + i * rows * cols), t_dst.push_back(dst + i * rows * cols);
      t_rows.push_back(rows), t_cols.push_back(cols);
    }
    next += m.numel();
    return dst;
  }
  cpu::PairWeights<T> pair(const PairParams& p, bool transposes) {
    const int64_t depth = p.depth();
    auto& ptrs = layers.emplace_back();
    for (int64_t k = 0; k < depth; ++k) ptrs.push_back(hold(p.w_hidden[k]));
    for (int64_t k = 0; k < depth; ++k) ptrs.push_back(hold(p.b_hidden[k]));
    if (transposes)
      for (int64_t k = 0; k < depth; ++k) ptrs.push_back(transposed(p.w_hidden[k]));
    cpu::PairWeights<T> w{transposed(p.w_in), hold(p.b_in), ptrs.data(), ptrs.data() + depth, hold(p.w_out),
                          hold(p.b_out), p.in(), p.hidden(), depth, p.b_out.size(-1)};
    if (transposes) {
      w.w_in_t = hold(p.w_in);
      w.w_hidden_t = ptrs.data() + 2 * depth;
      w.w_out_t = transposed(p.w_out);
    }
    return w;
  }
  void add_block(const BlockParams& b, const Tensor& cond, bool transposes) {
    cpu::FlowBlockWeights<T> w{hold(b.loc), hold(b.scale), static_cast<T>(b.alpha), index(b.unshuffle),
                               pair(b.st0, transposes), pair(b.st1, transposes), hold(cond), cond.size(1)};
    w.shuffle = index(b.shuffle);
    blocks.push_back(w);
  }
  void finish() {
    TORCH_CHECK(next == scratch.data_ptr<T>() + scratch.numel(), "KernelWeights: scratch size mismatch");
    cpu::table<T>().transpose_many(t_src.data(), t_dst.data(), t_rows.data(), t_cols.data(),
                                   static_cast<int64_t>(t_src.size()));
  }
};

template <typename T>
std::unique_ptr<KernelWeights<T>> kernel_weights(const FlowParams& p, at::TensorList conds, bool transposes) {
  auto w = std::make_unique<KernelWeights<T>>(p, transposes);
  for (size_t i = 0; i < p.blocks.size(); ++i) w->add_block(p.blocks[i], conds[i], transposes);
  w->finish();
  return w;
}

// The autograd function's inputs after x: the block conditions, every block's parameters
// (BlockParams order), then the permutations and their inverses.
std::vector<Tensor> flow_inputs(const FlowParams& p, const std::vector<Tensor>& conds) {
  std::vector<Tensor> inputs(conds.begin(), conds.end());
  for (const auto& b : p.blocks) b.append_to(inputs);
  for (const auto& b : p.blocks) inputs.push_back(b.shuffle);
  for (const auto& b : p.blocks) inputs.push_back(b.unshuffle);
  return inputs;
}
// Its inverse (alphas, depth and first_half travel beside the tensors).
FlowParams read_flow_inputs(at::TensorList inputs, const std::vector<double>& alphas, int64_t depth, int64_t first_half) {
  const int64_t count = static_cast<int64_t>(alphas.size());
  FlowParams p;
  p.first_half = first_half;
  const Tensor* cursor = inputs.data() + count;
  for (int64_t i = 0; i < count; ++i) {
    p.blocks.push_back(BlockParams::read(cursor, depth));
    p.blocks.back().alpha = alphas[i];
  }
  for (int64_t i = 0; i < count; ++i) p.blocks[i].shuffle = *cursor++;
  for (int64_t i = 0; i < count; ++i) p.blocks[i].unshuffle = *cursor++;
  return p;
}

// Training through flow_forward / flow_backward: one autograd node for the whole flow.
struct FlowFn : public torch::autograd::Function<FlowFn> {
  static variable_list forward(AutogradContext* ctx, Tensor x, at::TensorList inputs, std::vector<double> alphas,
                               int64_t depth, int64_t first_half) {
    const int64_t count = static_cast<int64_t>(alphas.size()), n = x.size(0), d = x.size(1);
    const FlowParams p = read_flow_inputs(inputs, alphas, depth, first_half);
    const Tensor xc = x.contiguous();
    Tensor v = torch::empty_like(xc), logdet = torch::empty({n}, x.options()), saved;
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "flow_forward", [&] {
      auto w = kernel_weights<scalar_t>(p, inputs.slice(0, count), false);
      int64_t total = 0;
      for (const auto& b : w->blocks) total += cpu::flow_saved_elements(n, d, b);
      saved = torch::empty({total}, x.options());
      cpu::table<scalar_t>().flow_forward(xc.data_ptr<scalar_t>(), n, d, first_half, w->blocks.data(), count,
                                          v.data_ptr<scalar_t>(), logdet.data_ptr<scalar_t>(), saved.data_ptr<scalar_t>());
    });
    std::vector<Tensor> keep = {saved};
    for (const auto& t : inputs) keep.push_back(t);
    ctx->save_for_backward(keep);
    ctx->saved_data["alphas"] = alphas;
    ctx->saved_data["depth"] = depth;
    ctx->saved_data["first_half"] = first_half;
    return {v, logdet};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto all = ctx->get_saved_variables();
    const Tensor& saved = all[0];
    const std::vector<Tensor> inputs(all.begin() + 1, all.end());
    const auto alphas = ctx->saved_data["alphas"].toDoubleVector();
    const int64_t depth = ctx->saved_data["depth"].toInt(), first_half = ctx->saved_data["first_half"].toInt();
    const int64_t count = static_cast<int64_t>(alphas.size());
    const FlowParams p = read_flow_inputs(inputs, alphas, depth, first_half);
    const at::TensorList conds(inputs.data(), count);
    const int64_t n = conds[0].size(0), d = p.blocks[0].loc.size(0);
    auto opts = saved.options();
    const Tensor gv = grads[0].defined() ? grads[0].contiguous() : torch::zeros({n, d}, opts);
    const Tensor gld = grads[1].defined() ? grads[1].contiguous() : torch::zeros({n}, opts);
    Tensor gx = torch::empty({n, d}, opts);
    std::vector<Tensor> g_conds, g_params, params;
    for (const auto& c : conds) g_conds.push_back(torch::empty({n, c.size(1)}, opts));
    for (const auto& b : p.blocks) b.append_to(params);
    for (const auto& t : params) g_params.push_back(torch::empty(t.sizes(), opts));
    AT_DISPATCH_FLOATING_TYPES(saved.scalar_type(), "flow_backward", [&] {
      using T = scalar_t;
      auto w = kernel_weights<T>(p, conds, true);
      int64_t total = 0;
      for (const auto& b : w->blocks) total += cpu::flow_work_elements(n, d, b);
      Tensor work = torch::empty({total}, opts);
      std::deque<std::vector<T*>> layer_ptrs;
      auto pair_grads = [&](const PairParams& g) {
        auto& ptrs = layer_ptrs.emplace_back();
        for (const auto& t : g.w_hidden) ptrs.push_back(t.data_ptr<T>());
        for (const auto& t : g.b_hidden) ptrs.push_back(t.data_ptr<T>());
        return cpu::PairGrads<T>{g.w_in.data_ptr<T>(), g.b_in.data_ptr<T>(), ptrs.data(), ptrs.data() + depth,
                                 g.w_out.data_ptr<T>(), g.b_out.data_ptr<T>()};
      };
      // The gradients in the parameters' layout, block by block.
      std::vector<cpu::FlowBlockGrads<T>> bg;
      const Tensor* cursor = g_params.data();
      for (int64_t i = 0; i < count; ++i) {
        const BlockParams g = BlockParams::read(cursor, depth);
        bg.push_back({g.loc.data_ptr<T>(), g.scale.data_ptr<T>(), pair_grads(g.st0), pair_grads(g.st1),
                      g_conds[i].data_ptr<T>()});
      }
      cpu::table<T>().flow_backward(n, d, first_half, w->blocks.data(), count, saved.data_ptr<T>(), gv.data_ptr<T>(),
                                    gld.data_ptr<T>(), work.data_ptr<T>(), gx.data_ptr<T>(), bg.data());
    });
    variable_list result = {gx};
    for (auto& g : g_conds) result.push_back(g);
    for (auto& g : g_params) result.push_back(g);
    for (int64_t i = 0; i < 2 * count; ++i) result.push_back(Tensor());  // the permutations
    for (int i = 0; i < 3; ++i) result.push_back(Tensor());               // alphas, depth, first_half
    return result;
  }
};
}  // namespace

std::pair<Tensor, Tensor> fused_flow_forward(const FlowParams& p, const Tensor& x, const std::vector<Tensor>& conds) {
  if (torch::GradMode::is_enabled()) {
    std::vector<double> alphas;
    for (const auto& b : p.blocks) alphas.push_back(b.alpha);
    const auto inputs = flow_inputs(p, conds);
    auto out = FlowFn::apply(x, at::TensorList(inputs), alphas, p.depth(), p.first_half);
    return {out[0], out[1]};
  }
  const Tensor xc = x.contiguous();
  Tensor v = torch::empty_like(xc), logdet = torch::empty({x.size(0)}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "flow_forward", [&] {
    auto w = kernel_weights<scalar_t>(p, conds, false);
    cpu::table<scalar_t>().flow_forward(xc.data_ptr<scalar_t>(), x.size(0), x.size(1), p.first_half, w->blocks.data(),
                                        static_cast<int64_t>(w->blocks.size()), v.data_ptr<scalar_t>(),
                                        logdet.data_ptr<scalar_t>(), nullptr);
  });
  return {v, logdet};
}

Tensor fused_flow_inverse(const FlowParams& p, const Tensor& v, const std::vector<Tensor>& conds) {
  const Tensor vc = v.contiguous();
  Tensor x = torch::empty_like(vc);
  AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "flow_inverse", [&] {
    auto w = kernel_weights<scalar_t>(p, conds, false);
    cpu::table<scalar_t>().flow_inverse(vc.data_ptr<scalar_t>(), vc.size(0), vc.size(1), p.first_half, w->blocks.data(),
                                        static_cast<int64_t>(w->blocks.size()), x.data_ptr<scalar_t>());
  });
  return x;
}

}  // namespace net2net::kernels
