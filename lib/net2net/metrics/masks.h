// Mask agreement (net2net-eval iou): how well generated layouts follow the requested ones, e.g.
// the silhouette of an image generated from a segmentation mask against that mask. Masks are rows
// of cells; a cell is "on" when its value exceeds the threshold.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <vector>

namespace net2net::metrics {

struct MaskAgreement {
  int64_t n = 0;               // predicted masks (rows)
  int64_t targets = 0;         // target masks
  int64_t per_target = 0;      // predicted masks per target (n / targets)
  double iou = 0;              // mean over predicted masks of |P and T| / |P or T| (1 when both are empty)
  double pixel_agreement = 0;  // mean share of cells where P and T agree
  int64_t both_empty = 0;      // predicted masks that are empty, as their target is
  double threshold = 0.5;
};

// pred: [n, cols] row-major, target: [targets, cols]; n must be a multiple of targets: predicted
// rows k*per_target .. (k+1)*per_target - 1 belong to target k (net2net-translate writes a
// condition's samples one after another). InputError otherwise (or for no rows, cols < 1).
MaskAgreement mask_agreement(const std::vector<float>& pred, int64_t n, const std::vector<float>& target, int64_t targets,
                             int64_t cols, double threshold);

nlohmann::json to_json(const MaskAgreement& result);

}  // namespace net2net::metrics
