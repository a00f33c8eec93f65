#include "net2net/metrics/masks.h"

#include <string>

#include "net2net/core/error.h"

namespace net2net::metrics {

MaskAgreement mask_agreement(const std::vector<float>& pred, int64_t n, const std::vector<float>& target, int64_t targets,
                             int64_t cols, double threshold) {
  if (n < 1 || targets < 1 || cols < 1) throw InputError("mask agreement needs at least one mask of at least one cell on each side");
  if (n % targets != 0)
    throw InputError("mask agreement: " + std::to_string(n) + " predicted masks are not a whole number per target (" +
                     std::to_string(targets) + " targets)");
  if (static_cast<int64_t>(pred.size()) < n * cols || static_cast<int64_t>(target.size()) < targets * cols)
    throw InputError("mask agreement: fewer values than masks x cells");
  MaskAgreement r;
  r.n = n, r.targets = targets, r.per_target = n / targets, r.threshold = threshold;
  double iou_sum = 0, agree_sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float* p = pred.data() + i * cols;
    const float* t = target.data() + (i / r.per_target) * cols;
    int64_t both = 0, either = 0, same = 0;
    for (int64_t c = 0; c < cols; ++c) {
      const bool a = p[c] > threshold, b = t[c] > threshold;
      both += a && b, either += a || b, same += a == b;
    }
    if (either == 0) ++r.both_empty;
    iou_sum += either == 0 ? 1.0 : static_cast<double>(both) / static_cast<double>(either);
    agree_sum += static_cast<double>(same) / static_cast<double>(cols);
  }
  r.iou = iou_sum / static_cast<double>(n);
  r.pixel_agreement = agree_sum / static_cast<double>(n);
  return r;
}

nlohmann::json to_json(const MaskAgreement& r) {
  return {{"iou", r.iou},         {"pixel_agreement", r.pixel_agreement}, {"n", r.n},
          {"targets", r.targets}, {"per_target", r.per_target},           {"both_empty", r.both_empty},
          {"threshold", r.threshold}};
}

}  // namespace net2net::metrics
