#include "net2net/train/warm_start.h"

#include <H5Cpp.h>
#include <fnmatch.h>

#include <map>

#include "net2net/config/cinn_config.h"
#include "net2net/core/error.h"
#include "net2net/io/checkpoint.h"
#include "net2net/train/trainer.h"

namespace net2net::train {
using nlohmann::json;
using torch::Tensor;

bool ignored_by(const std::string& name, const std::vector<std::string>& patterns) {
  for (const auto& p : patterns) {
    if (p.empty()) continue;
    if (name.compare(0, p.size(), p) == 0) return true;
    if (fnmatch(p.c_str(), name.c_str(), 0) == 0) return true;
  }
  return false;
}

namespace {
// Every parameter and buffer by the names of docs/formats.md (couplings per subnet: s0.linear0...),
// as views where the module packs them, so that copying into them fills the model.
std::map<std::string, Tensor> named_tensors(torch::nn::Module& m) {
  std::map<std::string, Tensor> out;
  for (auto& [name, t] : inn::unbatched_named_parameters(m)) out[name] = t;
  for (const auto& b : m.named_buffers(/*recurse=*/true)) out[b.key()] = b.value();
  return out;
}

std::string string_attribute(const H5::H5Object& object, const char* name) {
  if (!object.attrExists(name)) return "";
  auto attr = object.openAttribute(name);
  std::string value;
  attr.read(attr.getStrType(), value);
  return value;
}

bool is_weights_file(const std::string& path) {
  return path.size() > 3 && (path.compare(path.size() - 3, 3, ".h5") == 0 || path.compare(path.size() - 5, 5, ".hdf5") == 0);
}

// scripts/import_original.py's output: /weights/NAME datasets, root attributes format and model.
std::map<std::string, Tensor> read_weights_file(const std::string& path, json* model) {
  std::map<std::string, Tensor> out;
  try {
    H5::Exception::dontPrint();
    H5::H5File file(path, H5F_ACC_RDONLY);
    if (string_attribute(file, "format") != kImportedWeightsFormat)
      throw InputError("'" + path + "' is not an imported-weights file (root attribute format is not \"" +
                       kImportedWeightsFormat + "\"; make it with scripts/import_original.py)");
    if (model) {
      *model = json::parse(string_attribute(file, "model"), nullptr, false);
      if (!model->is_object()) throw InputError("'" + path + "': root attribute 'model' is not a JSON object");
    }
    H5::Group group = file.openGroup("weights");
    for (hsize_t i = 0; i < group.getNumObjs(); ++i) {
      const std::string name = group.getObjnameByIdx(i);
      H5::DataSet ds = group.openDataSet(name);
      H5::DataSpace space = ds.getSpace();
      const int rank = space.getSimpleExtentNdims();
      if (rank < 0 || rank > 4) throw InputError("'" + path + "' /weights/" + name + ": rank " + std::to_string(rank));
      std::vector<hsize_t> dims(rank);
      space.getSimpleExtentDims(dims.data());
      std::vector<int64_t> sizes(dims.begin(), dims.end());
      const auto type_class = ds.getTypeClass();
      if (type_class == H5T_FLOAT) {
        auto t = torch::empty(sizes, torch::kFloat64);
        ds.read(t.data_ptr<double>(), H5::PredType::NATIVE_DOUBLE);
        out[name] = t;
      } else if (type_class == H5T_INTEGER) {
        auto t = torch::empty(sizes, torch::kInt64);
        ds.read(t.data_ptr<int64_t>(), H5::PredType::NATIVE_INT64);
        out[name] = t;
      } else {
        throw InputError("'" + path + "' /weights/" + name + ": neither floating point nor integer");
      }
    }
  } catch (const H5::Exception& e) {
    throw InputError("'" + path + "': cannot read imported weights (" + e.getDetailMsg() + ")");
  }
  return out;
}
}  // namespace

json imported_model_section(const std::string& path) {
  if (!is_weights_file(path)) return nullptr;
  json model;
  read_weights_file(path, &model);
  return model;
}

WarmStart warm_start(inn::ConditionalFlow& model, const std::string& source_path, const std::vector<std::string>& ignore) {
  WarmStart w;
  std::map<std::string, Tensor> from;
  io::LoadedFlow source;  // keeps a checkpoint's tensors alive while they are copied
  if (is_weights_file(source_path)) {
    from = read_weights_file(source_path, nullptr);
    w.path = source_path;
  } else {
    source = io::load_flow_checkpoint(source_path);
    w.path = source.path;
    from = named_tensors(*source.model);
  }
  auto to = named_tensors(*model);
  torch::NoGradGuard no_grad;
  for (auto& [name, dst] : to) {
    if (ignored_by(name, ignore)) {
      w.ignored.push_back(name);
      continue;
    }
    auto it = from.find(name);
    if (it == from.end()) {
      w.fresh.push_back(name);
      continue;
    }
    const Tensor& src = it->second;
    if (!src.sizes().equals(dst.sizes()))
      throw ConfigError("train.init_from '" + w.path + "': tensor '" + name + "' is " + c10::str(src.sizes()) + " there but " +
                        c10::str(dst.sizes()) + " in this model (another architecture: list it in train.init_ignore / "
                        "--init-ignore to keep it initialised)");
    dst.copy_(src);
    w.loaded.push_back(name);
  }
  for (const auto& [name, src] : from)
    if (!to.count(name)) w.unused.push_back(name);
  // ActNorm caches that it was initialised: read the copied flags again.
  model->apply([](torch::nn::Module& m) {
    if (auto* a = dynamic_cast<inn::ActNormImpl*>(&m)) a->forget_cached_flag();
  });
  return w;
}

}  // namespace net2net::train

namespace net2net::train {

json write_model(const std::string& config_path, std::vector<std::string> overrides, bool seed_given, uint64_t seed,
                 const std::string& out) {
  json config = config::load_config(config_path, overrides);
  const std::string source = config["train"]["init_from"].is_string() ? config["train"]["init_from"].get<std::string>() : "";
  if (source.empty()) throw UsageError("--write-model needs --init-from (the weights to write as a model checkpoint)");
  // The imported flow's model section against the config's: a key the config leaves null is
  // taken from it; a different value is an error naming the key.
  const json imported = imported_model_section(source);
  if (imported.is_object()) {
    const json flat = imported.flatten(), mine = config["model"].flatten();
    for (const auto& [pointer, value] : flat.items()) {
      const std::string key = "model" + std::string(pointer);  // "/embedder/norm" -> "model/embedder/norm"
      std::string dotted = key;
      for (auto& ch : dotted)
        if (ch == '/') ch = '.';
      auto it = mine.find(pointer);
      if (it == mine.end() || it->is_null()) {
        overrides.push_back(dotted + "=" + value.dump());
      } else if (*it != value) {
        throw ConfigError("config '" + config_path + "': key '" + dotted + "' is " + it->dump() + " but the imported weights '" +
                          source + "' are of " + value.dump() + " (make the config match the original's flow)");
      }
    }
  }
  config = prepare_config(config_path, overrides, seed_given, seed, nullptr, /*require_data=*/false);
  auto model = inn::build_flow(config::flow_config_from_json(config), config["train"]["seed"].get<uint64_t>());
  const auto ignore = config["train"]["init_ignore"].get<std::vector<std::string>>();
  const WarmStart w = warm_start(model, source, ignore);
  // An import takes the whole model: a tensor missing from the weights, or one the model has no
  // place for, means another architecture.
  auto list = [](const std::vector<std::string>& names) {
    std::string s;
    for (size_t i = 0; i < names.size() && i < 5; ++i) s += (i ? ", " : "") + names[i];
    return names.size() > 5 ? s + ", ... (" + std::to_string(names.size()) + " in all)" : s;
  };
  if (!w.fresh.empty())
    throw InputError("'" + w.path + "' lacks tensors of this model: " + list(w.fresh) + " (does the config describe it?)");
  if (!w.unused.empty())
    throw InputError("'" + w.path + "' has tensors this model has no place for: " + list(w.unused) +
                     " (does the config describe it?)");
  model->eval();
  io::save_flow_checkpoint(out, config, model);
  return json{{"out", out}, {"from", w.path}, {"tensors", w.loaded.size()}, {"ignored", w.ignored},
              {"parameters", inn::count_parameters(*model)}, {"model", config["model"]}};
}

}  // namespace net2net::train
