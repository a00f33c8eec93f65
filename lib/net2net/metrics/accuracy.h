// Classification accuracy of generated content (net2net-eval accuracy): the share of items that
// a classifier (e.g. the example's judge) assigns to the expected class, per class, and,
// optionally, with requested property codes (e.g. caption-props: brightness, size), the share
// whose class is right and whose every requested property matches. Also the one batching loop
// of the eval metrics (accuracy, FID features): an expert over a source, batch by batch.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "net2net/data/source.h"
#include "net2net/experts/expert.h"

namespace net2net::metrics {

// Runs `expert` over `source` in batches of `batch_size` items: indices 0..N-1 in order, the last
// batch possibly shorter; on_batch gets each batch and the expert's output for it. UsageError
// for batch_size < 1.
void encode_in_batches(data::Source& source, experts::Expert& expert, int64_t batch_size,
                       const std::function<void(const data::Batch& batch, const torch::Tensor& output)>& on_batch);

// The class the classifier gives each item of the source: the argmax over dimension 1 of its
// logits [B, classes], in source order. InputError when the output is not [B, classes].
std::vector<int64_t> predict_classes(data::Source& source, experts::Expert& classifier, int64_t batch_size);

// Property codes, row-major [rows, cols] (e.g. caption-props: -1, 0, +1 per property). In the
// requested codes 0 means "not requested".
struct PropertyCodes {
  std::vector<float> values;
  int64_t rows = 0;
  int64_t cols = 0;
};

struct AccuracyResult {
  int64_t n = 0;        // items
  int64_t correct = 0;  // predicted == expected
  double accuracy = 0;  // correct / n (0 when n == 0)
  std::map<int64_t, std::pair<int64_t, int64_t>> per_class;  // expected class -> (correct, total)

  // Only with property codes:
  bool with_properties = false;
  int64_t correct_with_properties = 0;  // class right and every requested property matches
  double accuracy_with_properties = 0;  // correct_with_properties / n (NaN when n == 0)
  int64_t properties_requested = 0;     // requested (non-zero) codes over all items
  int64_t properties_matched = 0;       // of those, equal to the item's code
  double property_agreement = 1.0;      // matched / requested; 1 when none requested
  std::vector<int64_t> requested_by_column, matched_by_column;  // the same counts, property by property
};

// predicted and expected: one class per item (InputError when their sizes differ).
AccuracyResult classification_accuracy(const std::vector<int64_t>& predicted, const std::vector<int64_t>& expected);
// With the items' property codes and the requested ones: both as wide, each with a row per item
// at least (rows beyond the items are ignored); InputError otherwise.
AccuracyResult classification_accuracy(const std::vector<int64_t>& predicted, const std::vector<int64_t>& expected,
                                       const PropertyCodes& codes, const PropertyCodes& requested);

// The JSON net2net-eval accuracy prints: accuracy, classifier, n, per_class {"label": accuracy},
// and with properties accuracy_with_properties, property_agreement, properties_requested, and
// property by property (column) property_agreement_by_column (null: none requested) and
// properties_requested_by_column.
nlohmann::json to_json(const AccuracyResult& result, const std::string& classifier);

}  // namespace net2net::metrics
