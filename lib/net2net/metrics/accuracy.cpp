#include "net2net/metrics/accuracy.h"

#include <algorithm>

#include "net2net/core/error.h"

namespace net2net::metrics {

void encode_in_batches(data::Source& source, experts::Expert& expert, int64_t batch_size,
                       const std::function<void(const data::Batch& batch, const torch::Tensor& output)>& on_batch) {
  if (batch_size < 1) throw UsageError("batch size must be at least 1, got " + std::to_string(batch_size));
  const int64_t n = source.size();
  for (int64_t s = 0; s < n; s += batch_size) {
    std::vector<int64_t> idx;
    for (int64_t i = s; i < std::min(n, s + batch_size); ++i) idx.push_back(i);
    const data::Batch batch = source.get(idx);
    const torch::Tensor out = expert.encode(batch);
    on_batch(batch, out);
  }
}

std::vector<int64_t> predict_classes(data::Source& source, experts::Expert& classifier, int64_t batch_size) {
  std::vector<int64_t> predicted;
  predicted.reserve(static_cast<size_t>(std::max<int64_t>(source.size(), 0)));
  encode_in_batches(source, classifier, batch_size, [&](const data::Batch& batch, const torch::Tensor& output) {
    // [batch, classes, 1, 1] (a convolutional head) counts as [batch, classes].
    const torch::Tensor out = output.dim() > 2 && output.numel() == output.size(0) * output.size(1)
                                  ? output.reshape({output.size(0), output.size(1)})
                                  : output;
    if (out.dim() != 2 || out.size(0) != batch.size())
      throw InputError("classifier '" + classifier.spec() + "' must return logits [batch, classes] (" +
                       std::to_string(batch.size()) + " rows here), got " + std::to_string(out.dim()) +
                       "-d output of shape " + c10::str(out.sizes()));
    auto pred = out.argmax(1).to(torch::kCPU, torch::kInt64).contiguous();
    const int64_t* p = pred.data_ptr<int64_t>();
    predicted.insert(predicted.end(), p, p + pred.size(0));
  });
  return predicted;
}

AccuracyResult classification_accuracy(const std::vector<int64_t>& predicted, const std::vector<int64_t>& expected) {
  if (predicted.size() != expected.size())
    throw InputError("accuracy: " + std::to_string(predicted.size()) + " predictions but " +
                     std::to_string(expected.size()) + " expected classes");
  AccuracyResult r;
  r.n = static_cast<int64_t>(expected.size());
  for (int64_t i = 0; i < r.n; ++i) {
    const bool ok = predicted[i] == expected[i];
    r.correct += ok;
    auto& pc = r.per_class[expected[i]];
    pc.first += ok, pc.second += 1;
  }
  r.accuracy = r.n ? double(r.correct) / r.n : 0.0;
  return r;
}

AccuracyResult classification_accuracy(const std::vector<int64_t>& predicted, const std::vector<int64_t>& expected,
                                       const PropertyCodes& codes, const PropertyCodes& requested) {
  AccuracyResult r = classification_accuracy(predicted, expected);
  if (codes.cols != requested.cols || codes.rows < r.n || requested.rows < r.n ||
      static_cast<int64_t>(codes.values.size()) < codes.rows * codes.cols ||
      static_cast<int64_t>(requested.values.size()) < requested.rows * requested.cols)
    throw InputError("accuracy: the property codes and the requested ones must have the same width and a row per item");
  r.with_properties = true;
  const int64_t cols = codes.cols;
  r.requested_by_column.assign(cols, 0);
  r.matched_by_column.assign(cols, 0);
  for (int64_t i = 0; i < r.n; ++i) {
    bool ok = true;
    for (int64_t j = 0; j < cols; ++j) {
      const float want = requested.values[i * cols + j];
      if (want == 0) continue;  // not requested
      ++r.properties_requested, ++r.requested_by_column[j];
      const bool m = codes.values[i * cols + j] == want;
      r.properties_matched += m, r.matched_by_column[j] += m;
      ok = ok && m;
    }
    r.correct_with_properties += ok && predicted[i] == expected[i];
  }
  r.accuracy_with_properties = double(r.correct_with_properties) / r.n;
  r.property_agreement = r.properties_requested ? double(r.properties_matched) / r.properties_requested : 1.0;
  return r;
}

nlohmann::json to_json(const AccuracyResult& r, const std::string& classifier) {
  nlohmann::json per_class = nlohmann::json::object();
  for (const auto& [label, pc] : r.per_class) per_class[std::to_string(label)] = double(pc.first) / pc.second;
  nlohmann::json out = {{"accuracy", r.accuracy}, {"n", r.n}, {"per_class", per_class}, {"classifier", classifier}};
  if (r.with_properties) {
    out["accuracy_with_properties"] = r.accuracy_with_properties;
    out["property_agreement"] = r.property_agreement;
    out["properties_requested"] = r.properties_requested;
    // Per property (column): the share of its requests met (null where none was requested).
    nlohmann::json by_column = nlohmann::json::array(), requested = nlohmann::json::array();
    for (size_t j = 0; j < r.requested_by_column.size(); ++j) {
      const int64_t n = r.requested_by_column[j];
      by_column.push_back(n ? nlohmann::json(double(r.matched_by_column[j]) / n) : nlohmann::json(nullptr));
      requested.push_back(n);
    }
    out["property_agreement_by_column"] = by_column;
    out["properties_requested_by_column"] = requested;
  }
  return out;
}

}  // namespace net2net::metrics
