// Frechet distance between feature distributions (FID) and the kernel inception distance (KID),
// computed robustly: float64 statistics; the trace term from the eigenvalues of the symmetric
// PSD matrix sqrt(S1) S2 sqrt(S1) (tiny negative eigenvalues clamped and counted), which has
// no imaginary parts to go wrong; a singular covariance (fewer samples than dimensions) gets an
// eps*I retry and a warning instead of a crash. Statistics save to and load from HDF5 files.
#pragma once
#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <string>

#include "net2net/core/defaults.h"

namespace net2net::metrics {

struct FeatureStats {
  torch::Tensor mu;     // float64 [D]
  torch::Tensor sigma;  // float64 [D, D], unbiased (N - 1)
  int64_t n = 0;
  std::string features;  // what produced the features (expert spec)
};

// Mean and covariance of features [N, D] (any float type), in float64.
FeatureStats compute_stats(const torch::Tensor& features, const std::string& feature_spec);

struct FidResult {
  double fid = 0;
  double mean_term = 0;    // |mu1 - mu2|^2
  double trace_term = 0;   // tr(S1) + tr(S2) - 2 tr sqrt(sqrt(S1) S2 sqrt(S1))
  int clamped_eigenvalues = 0;
  double eps = 0;          // added to both diagonals (0 unless a covariance was singular)
};
FidResult frechet_distance(const FeatureStats& a, const FeatureStats& b, double eps = 1e-6);

// Unbiased KID: MMD^2 with the cubic polynomial kernel (x.y / D + 1)^3, averaged over
// `subsets` random subsets of `subset_size` rows from each side (seeded).
struct KidResult {
  double mean = 0, std = 0;
  int subsets = 0;
  int64_t subset_size = 0;
};
KidResult kernel_inception_distance(const torch::Tensor& a, const torch::Tensor& b, int subsets = 100,
                                    int64_t subset_size = 1000, uint64_t seed = kDefaultSeed);

// HDF5: /mu [D], /sigma [D, D] float64, attributes n, features, format = "net2net.fid-stats".
void save_stats(const std::string& path, const FeatureStats& stats);
FeatureStats load_stats(const std::string& path);

}  // namespace net2net::metrics
