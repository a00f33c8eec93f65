// Raw CPU kernels of the fused ops, in seven families (their bodies: cpu/impl/): the affine
// coupling, Adam, three GEMM shapes for short batches (nn, nt, tn), the subnet pair, ActNorm +
// LeakyReLU, the whole flow, and transposes. Compiled twice: for the baseline x86-64 ISA
// (kernels_default.cpp) and with AVX2 + FMA (kernels_avx2.cpp, where the compiler and SLEEF
// allow); table<T>() picks the best that this CPU runs, once. NET2NET_CPU_CAPABILITY=default
// forces the baseline (tests compare the two).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace net2net::kernels::cpu {

// One inn::SubnetPair's weights in the layouts of subnet_pair_forward: w_in [in, 2H], b_in [2H];
// per hidden layer k w_hidden[k] [2, H, H], b_hidden[k] [2, H]; w_out [2, H, out], b_out [2, out].
// For flow_backward also transposed: w_in_t [2H, in] (Linear's layout), w_hidden_t[k] [2, H, H]
// and w_out_t [2, out, H] (each [out, in]).
template <typename T>
struct PairWeights {
  const T *w_in, *b_in;
  const T* const* w_hidden;
  const T* const* b_hidden;
  const T *w_out, *b_out;
  int64_t in, hidden, depth, out;
  const T* w_in_t = nullptr;
  const T* const* w_hidden_t = nullptr;
  const T* w_out_t = nullptr;
};

// Gradients of a pair's parameters, in the parameters' own layouts (w_in [2H, in], as
// inn::SubnetPair holds it).
template <typename T>
struct PairGrads {
  T *w_in, *b_in;
  T* const* w_hidden;
  T* const* b_hidden;
  T *w_out, *b_out;
};

// One inn::FlowBlock for flow_inverse: ActNorm (loc, scale [d]), the invertible LeakyReLU (alpha;
// 0 when the block has none), the coupling's pairs st0 (input a + e wide, output d - a) and st1
// (input d - a + e, output a), the shuffle's inverse (column j of the coupling's output is column
// unshuffle[j] of the block's output), and the block's condition cond [n, e] contiguous.
template <typename T>
struct FlowBlockWeights {
  const T *loc, *scale;
  T alpha;
  const int64_t* unshuffle;
  PairWeights<T> st0, st1;
  const T* cond;
  int64_t cond_dim;
  const int64_t* shuffle = nullptr;  // forward: column j of the block's output is the coupling's shuffle[j]
};

// Gradients of one flow block's parameters (ActNorm's loc and scale [d], the pairs) and of its
// condition, cond [n, e].
template <typename T>
struct FlowBlockGrads {
  T *loc, *scale;
  PairGrads<T> st0, st1;
  T* cond;
};

// Elements that flow_forward keeps per flow block for flow_backward (n rows): the block's input
// and its ActNorm + LeakyReLU output [n, d], and per pair its input [n, in], first activations
// [n, 2H], hidden activations [2, n, H] per layer and s [n, out].
template <typename T>
inline int64_t flow_saved_elements(int64_t n, int64_t d, const FlowBlockWeights<T>& b) {
  auto pair = [n](const PairWeights<T>& p) { return n * (p.in + 2 * p.hidden * (1 + p.depth) + p.out); };
  return 2 * n * d + pair(b.st0) + pair(b.st1);
}
// Elements of flow_backward's workspace per flow block: the gradient at the ActNorm + LeakyReLU
// output [n, d] and per pair the gradients at every pre-activation ([n, 2H], [2, n, H] per hidden
// layer, [2, n, out]).
template <typename T>
inline int64_t flow_work_elements(int64_t n, int64_t d, const FlowBlockWeights<T>& b) {
  auto pair = [n](const PairWeights<T>& p) { return n * 2 * (p.hidden * (1 + p.depth) + p.out); };
  return n * d + pair(b.st0) + pair(b.st1);
}

// One parameter tensor of an Adam / AMSGrad step (Table::adam_many): p, g, m, v [n] (vmax [n]
// or null: no AMSGrad) and its constants (step_size = lr / bc1, sqrt_bc2 = sqrt(bc2)).
template <typename T>
struct AdamTensor {
  T* p;
  const T* g;
  T *m, *v, *vmax;
  int64_t n;
  double b1, b2, eps, wd, step_size, sqrt_bc2;
};

template <typename T>
struct Table {
  // y = x exp(s) + t, ld[r] = sum_j s[r, j]; row-major [n, d], contiguous.
  void (*coupling_forward)(const T* x, const T* s, const T* t, T* y, T* ld, int64_t n, int64_t d);
  // gx = gy exp(s); gs = gy x exp(s) + gld[r] (gld may be null: no log-det gradient).
  void (*coupling_backward)(const T* x, const T* s, const T* gy, const T* gld, T* gx, T* gs, int64_t n, int64_t d);
  // x = (y - t) exp(-s).
  void (*coupling_inverse)(const T* y, const T* s, const T* t, T* x, int64_t n, int64_t d);
  // One Adam / AMSGrad step in torch's order of operations (vmax null: no AMSGrad).
  void (*adam)(T* p, const T* g, T* m, T* v, T* vmax, int64_t n, double b1, double b2, double eps, double wd,
               double step_size, double sqrt_bc2);
  // The same step for `count` tensors in one parallel loop over all their elements: a small
  // model's ~300 tensors are each below one thread's share, so one loop per tensor left the
  // other threads idle.
  void (*adam_many)(const AdamTensor<T>* tensors, int64_t count);
  // sum_i sum_j data[i][j]^2 over `count` arrays of sizes[i] elements, in one parallel loop
  // (partial sums over fixed chunks, added in order: the same value for any thread count).
  double (*sum_squares_many)(const T* const* data, const int64_t* sizes, int64_t count);
  // c[r, q] = sum_l a[r, l] b[q, l]: a [m, len], b [n, len], c [m, n], row-major, contiguous.
  // The input gradient of x @ W for a short batch (m <= ~32): both operands are read along
  // their rows, where BLAS's transposed-B path is slow on such shapes (about 1/3 of its
  // non-transposed rate at m = 16 here).
  void (*matmul_nt)(const T* a, const T* b, T* c, int64_t m, int64_t n, int64_t len);
  // c[r, q] = bias[q] + sum_l a[r, l] b[l, q]: a [m, k] (row stride lda), b [k, n], c [m, n]
  // contiguous, bias [n] or null. The forward x W + b of a short batch against a large W.
  void (*matmul_nn)(const T* a, int64_t lda, const T* b, const T* bias, T* c, int64_t m, int64_t n, int64_t k);
  // c[p, q] = sum_i a[i, p] b[i, q]: a [m, k] (row stride lda), b [m, n], c [k, n] contiguous.
  // The weight gradient x^T g of a short batch. sum_squares (may be null) receives sum c^2,
  // taken from the registers (see GradientSquares in kernels/fused_adam.h).
  void (*matmul_tn)(const T* a, int64_t lda, const T* b, T* c, int64_t m, int64_t n, int64_t k, double* sum_squares);
  // The s and t subnets of a coupling half (inn::SubnetPair, small weights): x [n, in]; w_in
  // [in, 2H]; per hidden layer k w_hidden[k] [2, H, H], b_hidden[k] [2, H]; w_out [2, H, out],
  // b_out [2, out] (all [in, out], contiguous); LeakyReLU(0.01) after every layer but the last;
  // s = tanh(subnet 0's output), t = subnet 1's, each [n, out]. a0 [n, 2H] and acts[k] [2, n, H]
  // receive the activations when non-null (training). 2H, H, out: multiples of vector_width.
  void (*subnet_pair_forward)(const T* x, int64_t n, int64_t in, const T* w_in, const T* b_in, int64_t hidden,
                              int64_t depth, const T* const* w_hidden, const T* const* b_hidden, const T* w_out,
                              const T* b_out, int64_t out, T* s, T* t, T* a0, T* const* acts);
  // Its backward pass along the rows: the gradients at each layer's pre-activation, g_out [2, n,
  // out], g_hidden[k] [2, n, H], g_a0 [n, 2H], from gs, gt [n, out] and the saved s, a0, acts;
  // the weights transposed ([out, in]: w_hidden_t[k] [2, H, H], w_out_t [2, out, H]).
  void (*subnet_pair_backward)(int64_t n, int64_t hidden, int64_t depth, const T* const* w_hidden_t, const T* w_out_t,
                               int64_t out, const T* s, const T* a0, const T* const* acts, const T* gs, const T* gt,
                               T* g_out, T* const* g_hidden, T* g_a0);
  // ActNorm then the invertible LeakyReLU (inn::FlowBlock): u = scale (x + loc), y = u >= 0 ? u
  // : alpha u, negatives[r] = count of u < 0 in row r. x, y [n, d] contiguous; loc, scale [d].
  void (*norm_act_forward)(const T* x, const T* loc, const T* scale, T alpha, T* y, T* negatives, int64_t n, int64_t d);
  // gx, and the column sums g_loc = sum_r gu scale, g_scale = sum_r gu (x + loc), gu = gy f'(u).
  void (*norm_act_backward)(const T* x, const T* loc, const T* scale, T alpha, const T* gy, T* gx, T* g_loc, T* g_scale,
                            int64_t n, int64_t d);
  // x = (y >= 0 ? y : y / alpha) / scale - loc.
  void (*norm_act_inverse)(const T* y, const T* loc, const T* scale, T alpha, T* x, int64_t n, int64_t d);
  // x = the flow's inverse of v (inn::ConditionalFlow::inverse for inference): blocks[count - 1]
  // down to blocks[0], each undoing its shuffle, its coupling (a: the coupling's first half) and
  // its ActNorm + LeakyReLU. v, x [n, d] contiguous. Every row runs through all blocks on one
  // thread (blocks of 32 rows in parallel): no synchronisation and no intermediate tensors
  // between the ~10 steps of each block. Pair widths (2H, H, out) in whole vectors.
  void (*flow_inverse)(const T* v, int64_t n, int64_t d, int64_t a, const FlowBlockWeights<T>* blocks, int64_t count,
                       T* x);
  // The flow's forward pass (inn::ConditionalFlow::forward): v [n, d] and logdet [n] from x [n, d]
  // through blocks[0] .. blocks[count - 1], every row through all blocks on one thread. With
  // `saved` (training: sum of flow_saved_elements over the blocks, in block order) it keeps what
  // flow_backward needs. Pair widths (2H, H, out) in whole vectors.
  void (*flow_forward)(const T* x, int64_t n, int64_t d, int64_t a, const FlowBlockWeights<T>* blocks, int64_t count,
                       T* v, T* logdet, T* saved);
  // Its backward pass from gv [n, d] and gld [n]: gx [n, d], and per block the gradients of its
  // parameters and its condition (grads[i]); work: sum of flow_work_elements. Needs the pairs'
  // transposed weights and their inputs in whole vectors (in % vector_width == 0). First along
  // the rows (each thread its own), then every weight gradient as a sum over all rows.
  void (*flow_backward)(int64_t n, int64_t d, int64_t a, const FlowBlockWeights<T>* blocks, int64_t count,
                        const T* saved, const T* gv, const T* gld, T* work, T* gx, const FlowBlockGrads<T>* grads);
  // dst[i] = src[i]^T for `count` row-major matrices src[i] [rows[i], cols[i]], in parallel: the
  // transposed weights the flow kernels read, in one call instead of one copy op per matrix.
  void (*transpose_many)(const T* const* src, T* const* dst, const int64_t* rows, const int64_t* cols, int64_t count);
  // Threads that this variant's parallel loops actually use (a build check: ATen's
  // parallel_for is inline and runs serially in a file compiled without OpenMP).
  int (*parallel_threads)();
  // Elements of T per vector in this variant.
  int vector_width;
};

// Every function pointer of Table, by name: make_table (kernels_impl.h) fills each entry by this
// list, and the assertion below fails when a field of Table is missing from it.
#define NET2NET_CPU_TABLE_ENTRIES(X)                                                                       \
  X(coupling_forward) X(coupling_backward) X(coupling_inverse) X(adam) X(adam_many) X(sum_squares_many)    \
  X(matmul_nt) X(matmul_nn) X(matmul_tn) X(subnet_pair_forward) X(subnet_pair_backward) X(norm_act_forward) \
  X(norm_act_backward) X(norm_act_inverse) X(flow_inverse) X(flow_forward) X(flow_backward) X(transpose_many) \
  X(parallel_threads)
#define NET2NET_COUNT_ENTRY(name) +1
static_assert(offsetof(Table<float>, vector_width) == (0 NET2NET_CPU_TABLE_ENTRIES(NET2NET_COUNT_ENTRY)) * sizeof(void (*)()),
              "NET2NET_CPU_TABLE_ENTRIES must name every function pointer of Table");
#undef NET2NET_COUNT_ENTRY

template <typename T>
const Table<T>& table();
template <>
const Table<float>& table<float>();
template <>
const Table<double>& table<double>();

// "avx2" or "default": the variant table() returns.
std::string capability();
// Every variant built into this binary and runnable here ("default" first).
std::vector<std::string> available_capabilities();
// Selects a variant by name for the rest of the process (tests); false if not available.
bool set_capability(const std::string& name);

}  // namespace net2net::kernels::cpu
