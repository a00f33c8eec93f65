// net2net-bench: speed of our code paths, each against a reference on the same inputs, in one
// process; medians of several runs. Prints a JSON line per benchmark.
//   net2net-bench extract --expert SPEC --data SOURCE [--limit N] [--batch-size B] [--runs R]
//     whole extraction (source, experts, journal, HDF5) vs the expert alone on the same batches
//   net2net-bench train --config F [--runs R] [--steps S]
//     seconds per optimizer step of the config's model on random data (the trainer's step:
//     forward, loss, backward, gradient norm, AMSGrad); bench/train_step.py is the Python side.
//     NET2NET_BENCH_PROFILE=trace.json also writes one step's ops (torch's autograd profiler,
//     chrome://tracing format)
//   net2net-bench machine      sgemm GFLOP/s and copy GB/s of this machine (the roofline)
//   net2net-bench gemm [--rows 16] [--kind nn nt tn]   the GEMMs of a short-batch linear layer
//     (forward b + x W, input gradient g W^T, weight gradient x^T g): our kernels (kernels::cpu
//     matmul_nn / nt / tn) vs torch on the layer shapes of text2biggan and the example
//   net2net-bench sample --config F [--batch B]   seconds per batch of sampling T^-1(v | c)
//   net2net-bench fid [--n 10000] [--dim 2048] --out FILE.h5
//     statistics + Frechet distance of two random feature sets (written to FILE.h5 for the
//     scipy route, tests/python/fid_reference.py --time)
#include <CLI/CLI.hpp>
#include <torch/torch.h>
#include <torch/csrc/autograd/profiler_legacy.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <filesystem>
#include <functional>
#include <iostream>

#include "net2net/core/log.h"
#include "net2net/core/runtime.h"
#include "net2net/data/source.h"
#include "net2net/experts/expert.h"
#include "net2net/extract/extract.h"
#include "net2net/config/cinn_config.h"
#include "net2net/inn/flow.h"
#include "net2net/kernels/affine_coupling.h"
#include "net2net/kernels/cpu/kernels.h"
#include "net2net/kernels/fused_adam.h"
#include "net2net/io/embedding_store.h"
#include "net2net/metrics/fid.h"
#include "net2net/train/precision.h"

using namespace net2net;
namespace fs = std::filesystem;

namespace {
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app("net2net benchmarks", "net2net-bench");
  app.require_subcommand(1);
  std::string expert = "text-hash", source = "fashion-mnist:test";
  int64_t limit = 2000, batch = 64;
  int runs = 5, threads = 0;
  auto* ex = app.add_subcommand("extract", "extraction throughput vs the expert alone");
  ex->add_option("--expert", expert, "expert spec");
  ex->add_option("--data", source, "source");
  ex->add_option("--limit", limit, "items");
  ex->add_option("--batch-size", batch, "batch size");
  ex->add_option("--runs", runs, "runs (median)");
  app.add_option("--threads", threads, "threads (0: all)");
  std::string config_path;
  int steps = 3;
  int64_t fid_n = 10000, fid_dim = 2048;
  std::string fid_out;
  auto* fid = app.add_subcommand("fid", "FID of two random feature sets");
  fid->add_option("--n", fid_n, "rows per set");
  fid->add_option("--dim", fid_dim, "feature dimension");
  fid->add_option("--out", fid_out, "write the features here (for the scipy route)")->required();
  fid->add_option("--runs", runs, "runs (median)");
  auto* machine = app.add_subcommand("machine", "sgemm GFLOP/s and copy GB/s");
  int64_t sample_batch = 256;
  auto* sample = app.add_subcommand("sample", "seconds per batch of sampling");
  sample->add_option("--config", config_path, "cINN config")->required();
  sample->add_option("--batch", sample_batch, "conditions per batch");
  sample->add_option("--runs", runs, "runs (median)");
  sample->add_option("--steps", steps, "batches per run");
  auto* tr = app.add_subcommand("train", "seconds per training step of a config's model");
  tr->add_option("--config", config_path, "cINN config")->required();
  tr->add_option("--runs", runs, "runs (median)");
  tr->add_option("--steps", steps, "steps per run");
  std::string train_device = "cpu", train_precision = "fp32";
  tr->add_option("--device", train_device, "cpu or cuda[:N] (cuda: steps timed to the GPU's completion)");
  tr->add_option("--precision", train_precision, "fp32, tf32 or bf16 (as train.precision; tf32 and bf16 on cuda)");
  bool ab_unfused = false;
  tr->add_flag("--ab-unfused", ab_unfused,
               "after each run, the same steps with the fused coupling and layer kernels off (as "
               "NET2NET_UNFUSED=1; the fused Adam stays): an A/B in one process");
  auto* gemm = app.add_subcommand("gemm", "short-batch GEMMs of a linear layer: our kernels vs torch");
  int64_t gemm_rows = 16;
  std::vector<std::string> gemm_kinds = {"nn", "nt", "tn"};
  gemm->add_option("--rows", gemm_rows, "rows of x and g (the batch)");
  gemm->add_option("--kind", gemm_kinds, "nn: b + x W (forward), nt: g W^T (input gradient), tn: x^T g (weight gradient)")
      ->check(CLI::IsMember({"nn", "nt", "tn"}));
  gemm->add_option("--runs", runs, "runs (median)");
  bool gemm_stream = false;
  gemm->add_flag("--stream", gemm_stream,
                 "cycle through copies of W (and of c for tn) filling 512 MB, so that W streams from memory as "
                 "in a text2biggan step, instead of staying in cache");
  CLI11_PARSE(app, argc, argv);
  setup_logging("warn");
  int n_threads = set_threads(threads);
  keep_freed_memory();

  if (ex->parsed()) {
    auto src = data::open_source(source);
    experts::ExpertContext ctx;
    ctx.num_classes = src->num_classes();
    auto e = experts::make_expert(expert, ctx);
    int64_t n = std::min(limit, src->size());
    std::vector<data::Batch> batches;  // loaded once: the expert-alone timing excludes data loading
    for (int64_t s = 0; s < n; s += batch) {
      std::vector<int64_t> idx;
      for (int64_t i = s; i < std::min(n, s + batch); ++i) idx.push_back(i);
      batches.push_back(src->get(idx));
    }
    std::vector<double> alone, whole;
    auto out = (fs::temp_directory_path() / "net2net_bench_extract.h5").string();
    for (int r = 0; r < runs; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      for (const auto& b : batches) e->encode(b);
      alone.push_back(seconds_since(t0));
      extract::ExtractRequest req;
      req.source = source;
      req.out = out;
      req.limit = n;
      req.batch_size = batch;
      req.force = true;
      req.experts = {{"x", expert}};
      t0 = std::chrono::steady_clock::now();
      extract::run_extraction(req);
      whole.push_back(seconds_since(t0));
    }
    fs::remove(out);
    double a = median(alone), w = median(whole);
    std::cout << nlohmann::json{{"bench", "extract"}, {"expert", expert}, {"source", source}, {"items", n},
                                {"batch_size", batch}, {"threads", n_threads}, {"runs", runs},
                                {"expert_alone_items_per_s", n / a}, {"extract_items_per_s", n / w},
                                {"ratio_extract_over_expert_alone", a / w}}
                     .dump()
              << std::endl;
  }
  if (gemm->parsed()) {
    // [in, out] of the batched layers: text2biggan's hidden and output layers, the example's.
    const std::vector<std::array<int64_t, 2>> shapes = {{1024, 1024}, {1024, 134}, {2048, 402}, {128, 128}, {128, 32}};
    const auto& k = kernels::cpu::table<float>();
    for (const auto& kind : gemm_kinds)
      for (auto [in, out] : shapes) {
        // With --stream, each call takes the next of `copies` weight matrices (the tn output:
        // the next of `copies` gradients), 512 MB in all: far beyond the caches.
        const int64_t copies = gemm_stream ? std::max<int64_t>(2, (int64_t{512} << 20) / (in * out * 4)) : 1;
        auto ws = torch::randn({copies, in, out}), bias = torch::randn({out});
        auto x = torch::randn({gemm_rows, in}), g = torch::randn({gemm_rows, out});
        auto cs = torch::empty(kind == "nt" ? std::vector<int64_t>{gemm_rows, in}
                               : kind == "nn" ? std::vector<int64_t>{gemm_rows, out} : std::vector<int64_t>{copies, in, out});
        cs.fill_(0);  // touch every page now: first-touch page faults are not the kernels' time
        int64_t next = 0;
        auto w_now = [&] { return ws[next]; };
        auto c_now = [&] { return kind == "tn" ? cs[next] : cs; };
        auto advance = [&] { next = (next + 1) % copies; };
        std::function<void()> ours, theirs;
        if (kind == "nt") {  // the input gradient g W^T
          ours = [&] {
            k.matmul_nt(g.data_ptr<float>(), w_now().data_ptr<float>(), cs.data_ptr<float>(), gemm_rows, in, out), advance();
          };
          theirs = [&] { torch::mm_out(cs, g, w_now().t()), advance(); };
        } else if (kind == "nn") {  // the forward b + x W
          ours = [&] {
            k.matmul_nn(x.data_ptr<float>(), in, w_now().data_ptr<float>(), bias.data_ptr<float>(), cs.data_ptr<float>(),
                        gemm_rows, out, in),
                advance();
          };
          theirs = [&] { torch::addmm_out(cs, bias, x, w_now()), advance(); };
        } else {  // the weight gradient x^T g
          ours = [&] {
            k.matmul_tn(x.data_ptr<float>(), in, g.data_ptr<float>(), c_now().data_ptr<float>(), gemm_rows, out, in, nullptr), advance();
          };
          theirs = [&] {
            auto c = c_now();
            torch::mm_out(c, x.t(), g), advance();
          };
        }
        // Alternating runs of the two, so that drifts of a noisy machine hit both alike.
        const int reps = std::max<int64_t>(1, 200000000 / (2 * gemm_rows * in * out));
        auto once = [&](const std::function<void()>& f) {
          auto t0 = std::chrono::steady_clock::now();
          for (int i = 0; i < reps; ++i) f();
          return seconds_since(t0) / reps;
        };
        ours(), theirs();
        std::vector<double> ta, tb;
        for (int r = 0; r < runs; ++r) ta.push_back(once(ours)), tb.push_back(once(theirs));
        const double a = median(ta), b = median(tb);
        const double flops = 2.0 * gemm_rows * in * out;
        std::cout << nlohmann::json{{"bench", "gemm"}, {"kind", kind}, {"rows", gemm_rows}, {"stream", gemm_stream}, {"in", in}, {"out", out},
                                    {"threads", n_threads}, {"cpu_kernels", kernels::cpu::capability()},
                                    {"ours_gflops", flops / a / 1e9}, {"torch_gflops", flops / b / 1e9},
                                    {"ratio_ours_over_torch", a / b}}
                         .dump()
                  << std::endl;
      }
  }
  if (machine->parsed()) {
    const int64_t n = 2048;
    auto a = torch::randn({n, n}), b = torch::randn({n, n});
    torch::mm(a, b);
    std::vector<double> mm, cp;
    for (int r = 0; r < 5; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      torch::mm(a, b);
      mm.push_back(seconds_since(t0));
    }
    auto src = torch::randn({64 << 20}), dst = torch::empty_like(src);
    dst.copy_(src);
    for (int r = 0; r < 5; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      dst.copy_(src);
      cp.push_back(seconds_since(t0));
    }
    std::cout << nlohmann::json{{"bench", "machine"}, {"threads", n_threads}, {"cpu_kernels", kernels::cpu::capability()},
                                {"sgemm_gflops", 2.0 * n * n * n / median(mm) / 1e9},
                                {"copy_gb_per_s", 2.0 * src.numel() * 4 / median(cp) / 1e9}}
                     .dump()
              << std::endl;
  }
  if (sample->parsed()) {
    auto config = config::load_config(config_path, {});
    auto cfg = config::flow_config_from_json(config);
    auto model = inn::build_flow(cfg, 0);
    model->eval();
    torch::NoGradGuard g;
    auto c = torch::randn({sample_batch, cfg.cond_dim});
    model->sample(c, 1.0);
    std::vector<double> per;
    for (int r = 0; r < runs; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      for (int s = 0; s < steps; ++s) model->sample(c, 1.0);
      per.push_back(seconds_since(t0) / steps);
    }
    std::cout << nlohmann::json{{"bench", "sample"}, {"impl", "cpp"}, {"config", config_path}, {"threads", n_threads},
                                {"batch", sample_batch}, {"parameters", inn::count_parameters(*model)},
                                {"seconds_per_batch", median(per)}}
                     .dump()
              << std::endl;
  }
  if (fid->parsed()) {
    torch::manual_seed(0);
    auto mix = torch::randn({fid_dim, fid_dim}) / std::sqrt(double(fid_dim));
    auto a = torch::randn({fid_n, fid_dim}).matmul(mix).contiguous();
    auto b = (torch::randn({fid_n, fid_dim}).matmul(mix) * 1.1 + 0.05).contiguous();
    io::write_store(fid_out, {}, [&](io::EmbeddingWriter& w) {
      w.create_float("a", fid_dim);
      w.create_float("b", fid_dim);
      w.append_float("a", a.data_ptr<float>(), fid_n);
      w.append_float("b", b.data_ptr<float>(), fid_n);
    });
    std::vector<double> times;
    double value = 0;
    for (int r = 0; r < runs; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      value = metrics::frechet_distance(metrics::compute_stats(a, "x"), metrics::compute_stats(b, "x")).fid;
      times.push_back(seconds_since(t0));
    }
    std::cout << nlohmann::json{{"bench", "fid"}, {"impl", "cpp"}, {"n", fid_n}, {"dim", fid_dim}, {"threads", n_threads},
                                {"fid", value}, {"seconds", median(times)}}
                     .dump()
              << std::endl;
  }
  if (tr->parsed()) {
    auto config = config::load_config(config_path, {});
    auto cfg = config::flow_config_from_json(config);
    int64_t batch = config["train"]["batch_size"];
    const torch::Device device(check_device(train_device));
    const auto precision = train::parse_precision(train_precision);
    train::check_precision(precision, device);
    auto model = inn::build_flow(cfg, 0);
    model->to(device);
    model->train();
    auto betas = config["train"]["betas"].get<std::vector<double>>();
    kernels::FusedAdam adam(model->parameters(),
                            torch::optim::AdamOptions(1e-5).betas({betas[0], betas[1]}).amsgrad(config["train"]["amsgrad"].get<bool>()));
    auto x = torch::randn({batch, cfg.in_dim}).to(device), c = torch::randn({batch, cfg.cond_dim}).to(device);
    auto params = model->parameters();
    // A GPU runs ahead of the host: each phase is timed to its completion there.
    auto sync = [&] {
      if (device.is_cuda()) torch::cuda::synchronize(device.index() < 0 ? -1 : device.index());
    };
    // Phase times of one step: forward (with the loss), backward, gradient norm, optimizer.
    std::array<double, 4> phase{};
    auto step = [&] {
      auto t = std::chrono::steady_clock::now();
      auto lap = [&](int i) {
        phase[i] += seconds_since(t);
        t = std::chrono::steady_clock::now();
      };
      train::MatmulPrecisionScope tf32(precision, device);  // as the trainer
      adam.clear_grads();
      inn::FlowOutput out;
      {
        train::AutocastScope autocast(precision, device);
        out = model->forward(x, c);
      }
      auto loss = inn::nll_loss(out, 1.0 / x.size(0)).loss;  // as the trainer
      sync();
      lap(0);
      kernels::GradientSquares squares;
      kernels::backward_recording_squares(loss, squares);
      sync();
      lap(1);
      const double norm = kernels::gradient_norm(params, &squares);  // as the trainer
      lap(2);
      adam.step();
      sync();
      lap(3);
      return norm;
    };
    step(), step();  // warm-up: the first steps allocate the gradients and the optimizer state
    if (const char* trace = std::getenv("NET2NET_BENCH_PROFILE")) {
      // One step under torch's autograd profiler, as a chrome://tracing file (op counts and times).
      torch::autograd::profiler::RecordProfile guard(trace);
      step();
    }
    std::vector<double> per_step, per_step_unfused;
    std::array<std::vector<double>, 4> per_phase;
    for (int r = 0; r < runs; ++r) {
      phase.fill(0.0);
      auto t0 = std::chrono::steady_clock::now();
      for (int s = 0; s < steps; ++s) step();
      per_step.push_back(seconds_since(t0) / steps);
      for (int i = 0; i < 4; ++i) per_phase[i].push_back(phase[i] / steps);
      if (ab_unfused) {  // the same steps without our fused ops, right after: drifts hit both alike
        kernels::set_fused(false);
        t0 = std::chrono::steady_clock::now();
        for (int s = 0; s < steps; ++s) step();
        per_step_unfused.push_back(seconds_since(t0) / steps);
        kernels::set_fused(true);
      }
    }
    if (ab_unfused)
      std::cout << nlohmann::json{{"bench", "train-unfused"}, {"impl", "cpp"}, {"config", config_path},
                                  {"threads", n_threads}, {"seconds_per_step", median(per_step_unfused)},
                                  {"ratio_fused_over_unfused", median(per_step) / median(per_step_unfused)}}
                       .dump()
                << std::endl;
    std::cout << nlohmann::json{{"bench", "train"}, {"impl", "cpp"}, {"config", config_path}, {"threads", n_threads},
                                {"device", device.str()}, {"precision", train::to_string(precision)},
                                {"parameters", inn::count_parameters(*model)}, {"batch_size", batch},
                                {"forward_s", median(per_phase[0])}, {"backward_s", median(per_phase[1])},
                                {"grad_norm_s", median(per_phase[2])}, {"optimizer_s", median(per_phase[3])},
                                {"seconds_per_step", median(per_step)}}
                     .dump()
              << std::endl;
  }
  return 0;
}
