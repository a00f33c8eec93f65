// Renderings of the example's images for the paper's experiments beyond label and text
// (registered into experts::expert_registry() with the captions' experts):
//   sketch       images -> edge maps: the Sobel gradient magnitude of the grey image, scaled by
//                each image's own maximum, as an image [N,1,H,W] in [-1,1] (white strokes on
//                black), the analogue of the paper's sketches; chain it into a classifier
//                (sketch,ts:clf.pt:stage2) to condition on a sketch
//   label-props  labelled Fashion-MNIST images -> [one-hot label (10), caption-props (2)]: the
//                condition of the attribute-editing cINN (columns 10 and 11: brightness, size)
// and the texture randomisation that makes the example's shape-biased classifier (classifier
// config train.augment "shape"), the analogue of training on Stylized-ImageNet: each image gets
// one of identity, inversion, a random intensity remap (gamma), its sketch, or noise over a remap.
#pragma once
#include <torch/torch.h>

#include "net2net/experts/expert.h"

namespace net2net::example {

// [N,C,H,W] in [-1,1] -> [N,1,H,W] in [-1,1].
torch::Tensor sketch_images(const torch::Tensor& images);

// Images [N,1,H,W] in [-1,1], each re-rendered by one seeded random choice (drawn on the CPU from
// `generator`, so that a seeded epoch is the same on any device); the result stays in [-1,1].
torch::Tensor randomise_texture(const torch::Tensor& images, at::Generator generator);

void register_rendering_experts(experts::ExpertRegistry& registry);

}  // namespace net2net::example
