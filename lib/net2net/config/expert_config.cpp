// Key tables of the expert config kinds of the Fashion-MNIST example: "autoencoder" (expert g)
// and "classifier" (expert f, and the judge / feature network of the report).
#include "net2net/config/cinn_config.h"

namespace net2net::config {

namespace {
Key k(std::string path, Type type, json def, std::string help, std::optional<double> min = {},
      std::vector<std::string> choices = {}) {
  Key key;
  key.path = std::move(path);
  key.type = type;
  key.default_value = std::move(def);
  key.help = std::move(help);
  key.min = min;
  key.choices = std::move(choices);
  return key;
}

std::vector<Key> common(const std::string& kind) {
  return {
      k("kind", Type::String, kind, "Config kind.", {}, {kind}),
      k("name", Type::String, "", "Free-form name (logs, reports)."),
      k("description", Type::String, "", "Free-form description."),
      k("data.train", Type::String, "fashion-mnist:train", "Training images (a SOURCE with 1x28x28 images)."),
      k("data.test", Type::String, "fashion-mnist:test", "Test images for the final score (a SOURCE)."),
      k("data.limit", Type::Int, 0, "Use only the first N training and test items (0: all).", 0.0),
      k("train.batch_size", Type::Int, 128, "Images per step.", 1.0),
      k("train.epochs", Type::Int, 3, "Passes over the training images.", 1.0),
      k("train.lr", Type::Number, 2e-3, "Adam learning rate.", 0.0),
      k("train.lr_schedule", Type::String, "constant", "constant, or cosine: decays from train.lr to 0 over the epochs.", {}, {"constant", "cosine"}),
      k("train.seed", Type::Int, 23, "Seed of initialisation and shuffling.", 0.0),
      k("train.log_every", Type::Int, 100, "Steps between metrics lines.", 1.0),
  };
}
}  // namespace

const Schema& autoencoder_schema() {
  static const Schema schema = [] {
    auto keys = common("autoencoder");
    keys.push_back(k("model.latent_dim", Type::Int, 32, "Size of the latent code z_theta (what the cINN translates into).", 1.0));
    keys.push_back(k("model.channels", Type::Int, 32, "Channels of the first conv layer (the second has twice as many).", 1.0));
    keys.push_back(k("train.loss", Type::String, "l1", "Reconstruction loss.", {}, {"l1", "mse"}));
    return Schema("autoencoder", keys);
  }();
  return schema;
}

const Schema& classifier_schema() {
  static const Schema schema = [] {
    auto keys = common("classifier");
    keys.push_back(k("model.channels", Type::Int, 32, "Channels of the first conv layer (the second has twice as many).", 1.0));
    keys.push_back(k("model.hidden", Type::Int, 128, "Width of the hidden layer (stage3 / features).", 1.0));
    keys.push_back(k("model.classes", Type::Int, 10, "Number of classes.", 2.0));
    return Schema("classifier", keys);
  }();
  return schema;
}

}  // namespace net2net::config
