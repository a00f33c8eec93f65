// c10d's Gloo process group is compiled only with USE_C10D_GLOO (Debian's libtorch has it).
#define USE_C10D_GLOO 1
#include "net2net/train/distributed.h"

#include <spdlog/spdlog.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/version.h>
#ifdef USE_C10D_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <cstdlib>
#include <regex>

#include "net2net/core/error.h"

namespace net2net::train {
namespace {
// What a process group's collectives are called on: the group itself in LibTorch 1.x, its
// backend (ProcessGroupGloo, ProcessGroupNCCL) from 2.0 on.
#if TORCH_VERSION_MAJOR >= 2
using Collectives = c10d::Backend;
#else
using Collectives = c10d::ProcessGroup;
#endif
}  // namespace

std::string first_slurm_host(const std::string& nodelist) {
  // The first entry: up to a ',' that is not inside brackets.
  std::string first;
  int depth = 0;
  for (char c : nodelist) {
    if (c == '[') ++depth;
    if (c == ']') --depth;
    if (c == ',' && depth == 0) break;
    first += c;
  }
  auto open = first.find('[');
  if (open == std::string::npos) return first;
  std::string prefix = first.substr(0, open);
  std::string range = first.substr(open + 1, first.find(']') - open - 1);
  std::string item = range.substr(0, range.find_first_of(",-"));
  return prefix + item;
}

namespace {
int parse_int(const std::string& name, const std::string& value) {
  try {
    size_t used = 0;
    int v = std::stoi(value, &used);
    if (used == value.size()) return v;
  } catch (...) {
  }
  throw UsageError("environment variable " + name + " must be an integer, got '" + value + "'");
}
}  // namespace

DistEnv detect_distributed(const std::map<std::string, std::string>& given) {
  auto get = [&](const std::string& k) -> std::string {
    if (!given.empty()) {
      auto it = given.find(k);
      return it == given.end() ? "" : it->second;
    }
    const char* v = std::getenv(k.c_str());
    return v ? v : "";
  };
  DistEnv env;
  if (!get("WORLD_SIZE").empty()) {
    env.launcher = "torchrun";
    env.world_size = parse_int("WORLD_SIZE", get("WORLD_SIZE"));
    env.rank = parse_int("RANK", get("RANK").empty() ? "0" : get("RANK"));
    env.local_rank = get("LOCAL_RANK").empty() ? env.rank : parse_int("LOCAL_RANK", get("LOCAL_RANK"));
    if (!get("MASTER_ADDR").empty()) env.master_addr = get("MASTER_ADDR");
    // torchrun's agent already serves the store at MASTER_PORT (its static rendezvous): every
    // worker joins it as a client, under the prefix of the agent's restart attempt.
    const std::string agent = get("TORCHELASTIC_USE_AGENT_STORE");
    env.agent_store = agent == "True" || agent == "true" || agent == "1";
    if (!get("TORCHELASTIC_RESTART_COUNT").empty())
      env.restart_count = parse_int("TORCHELASTIC_RESTART_COUNT", get("TORCHELASTIC_RESTART_COUNT"));
  } else if (!get("SLURM_NTASKS").empty() && !get("SLURM_PROCID").empty()) {
    env.launcher = "slurm";
    env.world_size = parse_int("SLURM_NTASKS", get("SLURM_NTASKS"));
    env.rank = parse_int("SLURM_PROCID", get("SLURM_PROCID"));
    env.local_rank = get("SLURM_LOCALID").empty() ? 0 : parse_int("SLURM_LOCALID", get("SLURM_LOCALID"));
    if (!get("MASTER_ADDR").empty()) env.master_addr = get("MASTER_ADDR");
    else if (!get("SLURM_JOB_NODELIST").empty()) env.master_addr = first_slurm_host(get("SLURM_JOB_NODELIST"));
  }
  if (!get("MASTER_PORT").empty()) env.master_port = parse_int("MASTER_PORT", get("MASTER_PORT"));
  if (env.world_size < 1) throw UsageError("world size must be >= 1, got " + std::to_string(env.world_size));
  if (env.rank < 0 || env.rank >= env.world_size)
    throw UsageError("rank " + std::to_string(env.rank) + " is outside a world of " + std::to_string(env.world_size));
  if (env.master_port < 1 || env.master_port > 65535) throw UsageError("MASTER_PORT must be 1..65535");
  return env;
}

namespace {

class SingleCommunicator : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  void allreduce_mean(const std::vector<torch::Tensor>&) override {}
  void broadcast(const std::vector<torch::Tensor>&) override {}
  bool any(bool flag) override { return flag; }
  std::string backend() const override { return "none"; }
};

class C10dCommunicator : public Communicator {
 public:
  C10dCommunicator(const DistEnv& env, const std::string& device) : env_(env), device_(device) {
    c10d::TCPStoreOptions opts;
    opts.port = static_cast<uint16_t>(env.master_port);
    opts.isServer = env.rank == 0 && !env.agent_store;
    opts.numWorkers = env.world_size;
    opts.timeout = std::chrono::minutes(10);
    try {
      store_ = c10::make_intrusive<c10d::TCPStore>(env.master_addr, opts);
      if (env.agent_store)
        store_ = c10::make_intrusive<c10d::PrefixStore>("/worker/attempt_" + std::to_string(env.restart_count), store_);
    } catch (const std::exception& e) {
      throw IoError("rendezvous with " + env.master_addr + ":" + std::to_string(env.master_port) + " failed: " + e.what());
    }
    if (device.rfind("cuda", 0) == 0) {
#ifdef USE_C10D_NCCL
      // One process per GPU: NCCL's communicator belongs to the current device.
      if (device_.has_index()) c10::cuda::set_device(device_.index());
      pg_ = c10::make_intrusive<c10d::ProcessGroupNCCL>(store_, env.rank, env.world_size);
      backend_ = "nccl";
#else
      throw UsageError("--device cuda with several processes needs a LibTorch built with NCCL");
#endif
    } else {
      auto o = c10d::ProcessGroupGloo::Options::create(std::chrono::minutes(10));
      const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
      if (ifname) o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
      else if (env.master_addr == "127.0.0.1" || env.master_addr == "localhost")
        o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      else
        o->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      pg_ = c10::make_intrusive<c10d::ProcessGroupGloo>(store_, env.rank, env.world_size, o);
      backend_ = "gloo";
    }
    spdlog::info("rank {}/{}: {} process group via {}:{}", env.rank, env.world_size, backend_, env.master_addr,
                 env.master_port);
  }
  int rank() const override { return env_.rank; }
  int world_size() const override { return env_.world_size; }
  std::string backend() const override { return backend_; }

  void allreduce_mean(const std::vector<torch::Tensor>& tensors) override {
    if (tensors.empty()) return;
    std::vector<torch::Tensor> flat_parts;
    for (const auto& t : tensors) flat_parts.push_back(t.reshape({-1}));
    std::vector<torch::Tensor> bucket = {torch::cat(flat_parts)};
    pg_->allreduce(bucket)->wait();
    bucket[0].div_(env_.world_size);
    int64_t offset = 0;
    for (const auto& t : tensors) {
      t.copy_(bucket[0].narrow(0, offset, t.numel()).view(t.sizes()));
      offset += t.numel();
    }
  }
  void broadcast(const std::vector<torch::Tensor>& tensors) override {
    for (const auto& t : tensors) {
      std::vector<torch::Tensor> one = {t};
      pg_->broadcast(one)->wait();
    }
  }
  bool any(bool flag) override {
    std::vector<torch::Tensor> v = {torch::full({1}, flag ? 1.0f : 0.0f, torch::TensorOptions().device(device_))};
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::MAX;
    pg_->allreduce(v, opts)->wait();
    return v[0].item<float>() > 0.5f;
  }

 private:
  DistEnv env_;
  torch::Device device_;
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<Collectives> pg_;
  std::string backend_;
};

}  // namespace

std::unique_ptr<Communicator> make_single_communicator() { return std::make_unique<SingleCommunicator>(); }

std::unique_ptr<Communicator> make_communicator(const DistEnv& env, const std::string& device) {
  if (env.world_size == 1) return make_single_communicator();
  return std::make_unique<C10dCommunicator>(env, device);
}

}  // namespace net2net::train
