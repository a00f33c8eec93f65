// Key tables of the expert config kinds of the Fashion-MNIST example: "autoencoder" (expert g)
// and "classifier" (expert f, and the judge / feature network of the report).
#include "net2net/config/cinn_config.h"
#include "net2net/core/defaults.h"

namespace net2net::config {

namespace {
using namespace keys;

std::vector<Key> common(const std::string& kind) {
  return {
      str("kind", kind, "Config kind.", {kind}),
      str("name", "", "Free-form name (logs, reports)."),
      str("description", "", "Free-form description."),
      str("data.train", "fashion-mnist:train", "Training images (a SOURCE with 1x28x28 images)."),
      str("data.test", "fashion-mnist:test", "Test images for the final score (a SOURCE)."),
      integer("data.limit", 0, "Use only the first N training and test items (0: all).", 0.0),
      integer("train.batch_size", 128, "Images per step.", 1.0),
      integer("train.epochs", 3, "Passes over the training images.", 1.0),
      number("train.lr", 2e-3, "Adam learning rate.", 0.0),
      str("train.lr_schedule", "constant", "constant, or cosine: decays from train.lr to 0 over the epochs.", {"constant", "cosine"}),
      seed("train.seed", kDefaultSeed, "Seed of initialisation and shuffling."),
      integer("train.log_every", 100, "Steps between metrics lines.", 1.0),
  };
}
}  // namespace

const Schema& autoencoder_schema() {
  static const Schema schema = [] {
    auto keys = common("autoencoder");
    keys.push_back(integer("model.latent_dim", 32, "Size of the latent code z_theta (what the cINN translates into).", 1.0));
    keys.push_back(integer("model.channels", 32, "Channels of the first conv layer (the second has twice as many).", 1.0));
    keys.push_back(str("train.loss", "l1", "Reconstruction loss.", {"l1", "mse"}));
    keys.push_back(str("train.augment", "none",
                       "none, or invert-odd: the items of odd index always inverted, those of even index never (train and test), "
                       "an autoencoder over two domains that share no item: the unaligned-translation experiment's.",
                       {"none", "invert-odd"}));
    return Schema("autoencoder", keys);
  }();
  return schema;
}

const Schema& classifier_schema() {
  static const Schema schema = [] {
    auto keys = common("classifier");
    keys.push_back(integer("model.channels", 32, "Channels of the first conv layer (the second has twice as many).", 1.0));
    keys.push_back(integer("model.hidden", 128, "Width of the hidden layer (stage3 / features).", 1.0));
    keys.push_back(integer("model.classes", 10, "Number of classes.", 2.0));
    keys.push_back(str("train.augment", "none",
                       "none, or shape: each training image re-rendered at random (kept, inverted, intensity remap, its sketch, noise) so that texture and contrast stop telling the classes apart: the example's shape-biased expert, the analogue of training on Stylized-ImageNet.",
                       {"none", "shape"}));
    return Schema("classifier", keys);
  }();
  return schema;
}

}  // namespace net2net::config
