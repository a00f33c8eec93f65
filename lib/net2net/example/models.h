// The small experts of the Fashion-MNIST example, trained by net2net-train (config kinds
// "autoencoder" and "classifier") and saved as TorchScript, so that they load through the same
// ts: path as any user's expert. They are TorchScript from the start (torch::jit::Module with
// methods compiled from source): the module that trains is the module that is saved.
//   autoencoder: encode(x [N,1,28,28] in [-1,1]) -> z [N, latent]; decode(z) -> images in [-1,1]
//   classifier:  stage1(x) [N, c*7*7], stage2(x) [N, 2c*3*3], features(x) = stage3 [N, hidden],
//                forward(x) logits [N, 10], encode = features
#pragma once
#include <torch/script.h>

#include <cstdint>
#include <string>

namespace net2net::example {

torch::jit::Module make_autoencoder(int64_t latent_dim, int64_t channels, uint64_t seed);
torch::jit::Module make_classifier(int64_t channels, int64_t hidden, int64_t classes, uint64_t seed);

// Saves a module atomically (temporary name, then rename).
void save_module(torch::jit::Module& module, const std::string& path);

}  // namespace net2net::example

