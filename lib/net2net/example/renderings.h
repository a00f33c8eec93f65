// Renderings of the example's images for the paper's experiments beyond label and text
// (registered into experts::expert_registry() with the captions' experts):
//   sketch       images -> edge maps: the Sobel gradient magnitude of the grey image, scaled by
//                each image's own maximum, as an image [N,1,H,W] in [-1,1] (white strokes on
//                black), the analogue of the paper's sketches; chain it into a classifier
//                (sketch,ts:clf.pt:stage2) to condition on a sketch
//   label-props  labelled Fashion-MNIST images -> [one-hot label (10), caption-props (2)]: the
//                condition of the attribute-editing cINN (columns 10 and 11: brightness, size)
//   silhouette:hard|soft|image  images -> the item's silhouette on a coarse 7x7 grid, the example's
//                segmentation expert: soft, per cell the mean foreground score of its pixels
//                (a pixel's score ramps from 0 at the background's intensity to 1 at a fifth of
//                full intensity, so dim parts score less: the analogue of a segmentation net's
//                logits, which keep more of the input); hard, its argmax (score > 1/2, 0 or 1);
//                image, the hard mask drawn at the input's size (+1 item, -1 background) for grids
//                and as --data that silhouette:hard maps back to the same mask (H, W multiples of 7)
//   invert       images -> -images (the second domain of the unaligned experiment)
//   background   images -> [N,1] domain code: the sign of the mean of the image's border pixels,
//                -1 for a dark background (Fashion-MNIST), +1 for a light one (inverted): the
//                unaligned experiment's domain classifier, exact on both domains' real items
//   label-domain labelled images -> [one-hot label (10), background (1)]: the (class, domain)
//                condition of the unaligned-translation cINN (column 10: the domain, -1 / +1)
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

// Images [N,C,H,W] in [-1,1] -> soft silhouette scores [N,1,7,7] in [0,1] (H and W at least 7).
torch::Tensor silhouette_scores(const torch::Tensor& images);

// Images [N,C,H,W] -> [N,1]: -1 (dark border, the first domain), +1 (light border, inverted).
torch::Tensor background_code(const torch::Tensor& images);

// The unaligned experiment's two domains (autoencoder train.augment invert-odd): images [N,C,H,W]
// whose item index (int64 [N], on the images' device) is odd come back inverted, the others as
// they are, so no item appears in both domains (as net2net-extract --shard 0/2 and 1/2 split them).
torch::Tensor invert_odd_items(const torch::Tensor& images, const torch::Tensor& index);

void register_rendering_experts(experts::ExpertRegistry& registry);

}  // namespace net2net::example
