// Data-parallel training on torch's own c10d: Gloo on CPU, NCCL where LibTorch has CUDA.
// Rank, world size and rendezvous come from torchrun-style variables (RANK, WORLD_SIZE,
// LOCAL_RANK, MASTER_ADDR, MASTER_PORT) or SLURM's (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID,
// the first host of SLURM_JOB_NODELIST; MASTER_PORT or 29500).
#pragma once
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace net2net::train {

struct DistEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::string launcher = "single";  // single | torchrun | slurm
  bool agent_store = false;          // torchrun's agent serves the store (TORCHELASTIC_USE_AGENT_STORE)
  int restart_count = 0;             // TORCHELASTIC_RESTART_COUNT: the store prefix of this attempt
};

// Reads the environment (`env` for tests; empty: the process environment). UsageError for
// inconsistent values (rank outside the world, a bad port).
DistEnv detect_distributed(const std::map<std::string, std::string>& env = {});

// First host of a SLURM node list: "node[01-04,07],gpu3" -> "node01".
std::string first_slurm_host(const std::string& nodelist);

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // Averages the tensors over all ranks, in place (one flat all-reduce).
  virtual void allreduce_mean(const std::vector<torch::Tensor>& tensors) = 0;
  // Copies rank 0's tensors to every rank, in place.
  virtual void broadcast(const std::vector<torch::Tensor>& tensors) = 0;
  // True on every rank when it is true on any (stop requests, failures).
  virtual bool any(bool flag) = 0;
  virtual std::string backend() const = 0;
};

// One process: every collective is the identity.
std::unique_ptr<Communicator> make_single_communicator();
// Gloo (cpu) or NCCL (cuda devices, where built); rendezvous through a TCPStore on the master.
std::unique_ptr<Communicator> make_communicator(const DistEnv& env, const std::string& device);

}  // namespace net2net::train
