// The Fashion-MNIST example's captions, and the two experts that make them (registered into
// experts::expert_registry() from here):
//   caption         labelled Fashion-MNIST images -> texts: the class name with properties
//                   (dark / light, small / large: class-relative tertiles over fashion-mnist:train),
//                   for chains such as caption,text-hash:256
//   caption-props   the caption's property codes [N, 2] (brightness, size: -1, 0, +1)
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

#include "net2net/data/source.h"
#include "net2net/experts/expert.h"

namespace net2net::example {

// Caption property codes [N, 2]: brightness (-1 dark, 0, +1 light) and size (-1 small, 0,
// +1 large), relative to the item's class. The thresholds are the class-wise tertiles over the
// Fashion-MNIST training images, computed once (fashion-mnist:train, default folder).
// InputError unless the batch holds images with Fashion-MNIST labels.
torch::Tensor fashion_properties(const data::Batch& batch);
// The caption of each image of a batch (needs labels): "a dark large coat", "a sandal", ...
std::vector<std::string> fashion_captions(const data::Batch& batch);

// Adds caption and caption-props to `registry` (experts::expert_registry() calls it).
void register_example_experts(experts::ExpertRegistry& registry);

}  // namespace net2net::example
