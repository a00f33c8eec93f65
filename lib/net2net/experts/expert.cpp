#include "net2net/experts/expert.h"

#include <openssl/evp.h>
#include <torch/script.h>

#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "net2net/core/error.h"
#include "net2net/example/captions.h"

namespace net2net::experts {
namespace fs = std::filesystem;
using nlohmann::json;

torch::Tensor Expert::decode(const torch::Tensor&) {
  throw UsageError("expert '" + spec() + "' has no decoder (a ts: module with a decode method does)");
}

json Expert::fingerprint() const { return json{{"spec", spec()}}; }

data::Batch Expert::transform(const data::Batch& batch) { return as_batch(encode(batch), batch); }

std::string sha256_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError("cannot open '" + path + "' to hash it");
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  std::vector<char> buf(1 << 16);
  while (in) {
    in.read(buf.data(), buf.size());
    if (in.gcount() > 0) EVP_DigestUpdate(ctx, buf.data(), static_cast<size_t>(in.gcount()));
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx, md, &len);
  EVP_MD_CTX_free(ctx);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) out += hex[md[i] >> 4], out += hex[md[i] & 15];
  return out;
}

data::Batch as_batch(const torch::Tensor& output, const data::Batch& like) {
  data::Batch b;
  b.index = like.index;
  b.labels = like.labels;
  b.tensor = output;
  b.kind = output.dim() == 4 ? data::ItemKind::Image : data::ItemKind::Vector;
  return b;
}

namespace {

// ---------------------------------------------------------------- text-hash
uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

void add_feature(float* row, int64_t dim, const std::string& feature, float weight) {
  uint64_t h = fnv1a(feature);
  row[h % static_cast<uint64_t>(dim)] += (h >> 63) ? -weight : weight;
}

}  // namespace

torch::Tensor text_hash(const std::vector<std::string>& texts, int64_t dim) {
  auto out = torch::zeros({int64_t(texts.size()), dim});
  float* data = out.data_ptr<float>();
  for (size_t r = 0; r < texts.size(); ++r) {
    float* row = data + r * dim;
    std::vector<std::string> words;
    std::string cur;
    for (unsigned char c : texts[r]) {
      if (std::isalnum(c)) {
        cur += static_cast<char>(std::tolower(c));
      } else if (!cur.empty()) {
        words.push_back(cur), cur.clear();
      }
    }
    if (!cur.empty()) words.push_back(cur);
    for (size_t i = 0; i < words.size(); ++i) {
      add_feature(row, dim, "w:" + words[i], 1.0f);
      if (i + 1 < words.size()) add_feature(row, dim, "b:" + words[i] + " " + words[i + 1], 1.0f);
      std::string padded = " " + words[i] + " ";
      for (size_t k = 0; k + 3 <= padded.size(); ++k) add_feature(row, dim, "c:" + padded.substr(k, 3), 0.5f);
    }
    double norm = 0;
    for (int64_t k = 0; k < dim; ++k) norm += double(row[k]) * row[k];
    if (norm > 0) {
      float inv = static_cast<float>(1.0 / std::sqrt(norm));
      for (int64_t k = 0; k < dim; ++k) row[k] *= inv;
    }
  }
  return out;
}

namespace {

int64_t parse_positive(const std::string& text, const std::string& spec) {
  try {
    size_t used = 0;
    long long v = std::stoll(text, &used);
    if (used == text.size() && v > 0) return v;
  } catch (...) {
  }
  throw UsageError("expert '" + spec + "': '" + text + "' must be a positive integer");
}

class LabelExpert : public Expert {
 public:
  LabelExpert(int64_t classes, std::string spec) : classes_(classes), spec_(std::move(spec)) {}
  std::string spec() const override { return spec_; }
  torch::Tensor encode(const data::Batch& b) override {
    if (!b.labels.defined())
      throw InputError("expert 'label': the source has no labels (fashion-mnist and h5 caches with /label do)");
    if (classes_ <= 0) throw UsageError("expert 'label': the number of classes is unknown; use label:K");
    auto bad = (b.labels < 0) | (b.labels >= classes_);
    if (bad.any().item<bool>()) {
      int64_t r = bad.nonzero()[0][0].item<int64_t>();
      throw InputError("expert '" + spec_ + "': item " + std::to_string(b.index[r]) + " has label " +
                       std::to_string(b.labels[r].item<int64_t>()) + ", outside 0.." + std::to_string(classes_ - 1));
    }
    return torch::one_hot(b.labels, classes_).to(torch::kFloat32);
  }
  json fingerprint() const override { return json{{"spec", spec_}, {"classes", classes_}}; }

 private:
  int64_t classes_;
  std::string spec_;
};

class TextHashExpert : public Expert {
 public:
  TextHashExpert(int64_t dim, std::string spec) : dim_(dim), spec_(std::move(spec)) {}
  std::string spec() const override { return spec_; }
  torch::Tensor encode(const data::Batch& b) override {
    if (b.kind != data::ItemKind::Text)
      throw InputError("expert '" + spec_ + "' needs texts, but the items are " + data::kind_name(b.kind) + "s");
    return text_hash(b.texts, dim_);
  }

 private:
  int64_t dim_;
  std::string spec_;
};

class IdentityExpert : public Expert {
 public:
  std::string spec() const override { return "identity"; }
  torch::Tensor encode(const data::Batch& b) override {
    if (b.kind == data::ItemKind::Text) {
      // A tsv source's numeric columns travel with its texts: those are passed on.
      if (b.tensor.defined()) return b.tensor.to(torch::kFloat32).contiguous();
      throw InputError("expert 'identity' cannot pass texts on; use text-hash (or a tsv source with numeric columns)");
    }
    return b.tensor.to(torch::kFloat32).contiguous();
  }
  bool can_decode() const override { return true; }
  torch::Tensor decode(const torch::Tensor& z) override { return z; }
};

// Columns [first, end) of each item's vector (an image flattened): a part of a wider condition,
// e.g. the caption properties (10:12) of label-props.
class ColumnsExpert : public Expert {
 public:
  ColumnsExpert(int64_t first, int64_t end, std::string spec) : first_(first), end_(end), spec_(std::move(spec)) {}
  std::string spec() const override { return spec_; }
  torch::Tensor encode(const data::Batch& b) override {
    if (!b.tensor.defined()) throw InputError("expert '" + spec_ + "' takes vectors or images, got " + data::kind_name(b.kind));
    auto x = b.tensor.reshape({b.tensor.size(0), -1});
    if (end_ > x.size(1))
      throw InputError("expert '" + spec_ + "': the items have " + std::to_string(x.size(1)) + " columns, fewer than " +
                       std::to_string(end_));
    return x.narrow(1, first_, end_ - first_).to(torch::kFloat32).contiguous();
  }

 private:
  int64_t first_, end_;
  std::string spec_;
};

class TorchScriptExpert : public Expert {
 public:
  TorchScriptExpert(const std::string& path, const std::string& method, std::string spec, torch::Device device)
      : path_(path), spec_(std::move(spec)), device_(device) {
    std::error_code ec;
    if (!fs::exists(path, ec)) throw IoError("TorchScript expert '" + path + "' does not exist");
    try {
      module_ = torch::jit::load(path, device);
    } catch (const c10::Error& e) {
      throw InputError("'" + path + "' is not a loadable TorchScript module: " + e.what_without_backtrace());
    }
    module_.eval();
    if (!method.empty()) {
      if (!module_.find_method(method))
        throw InputError("TorchScript expert '" + path + "' has no method '" + method + "' (it has: " + methods() + ")");
      method_ = method;
    } else if (module_.find_method("encode")) {
      method_ = "encode";
    } else if (module_.find_method("forward")) {
      method_ = "forward";
    } else {
      throw InputError("TorchScript expert '" + path + "' has neither encode nor forward (it has: " + methods() + ")");
    }
    sha256_ = sha256_file(path);
  }
  std::string spec() const override { return spec_; }
  torch::Tensor encode(const data::Batch& b) override {
    c10::IValue input;
    if (b.kind == data::ItemKind::Text) {
      c10::List<std::string> list;
      for (const auto& t : b.texts) list.push_back(t);
      input = list;
    } else {
      input = b.tensor.to(device_);
    }
    return call(method_, input);
  }
  bool can_decode() const override { return module_.find_method("decode").has_value(); }
  torch::Tensor decode(const torch::Tensor& z) override {
    if (!can_decode()) return Expert::decode(z);
    return call("decode", z.to(device_));
  }
  json fingerprint() const override { return json{{"spec", spec_}, {"method", method_}, {"sha256", sha256_}}; }

 private:
  std::string methods() const {
    std::string all;
    for (const auto& m : module_.get_methods()) all += (all.empty() ? "" : ", ") + m.name();
    return all.empty() ? "none" : all;
  }
  torch::Tensor call(const std::string& method, const c10::IValue& input) {
    torch::InferenceMode guard;
    c10::IValue out;
    try {
      out = module_.get_method(method)({input});
    } catch (const c10::Error& e) {
      throw InputError("TorchScript expert '" + path_ + "' failed in " + method + "(): " + e.what_without_backtrace());
    } catch (const std::exception& e) {  // errors raised by the TorchScript interpreter
      throw InputError("TorchScript expert '" + path_ + "' failed in " + method + "(): " + e.what());
    }
    if (!out.isTensor())
      throw InputError("TorchScript expert '" + path_ + "': " + method + "() must return a tensor, returned " +
                       out.tagKind());
    return out.toTensor().to(torch::kCPU, torch::kFloat32).contiguous();
  }
  std::string path_, spec_, method_, sha256_;
  torch::Device device_;
  mutable torch::jit::Module module_;
};

class ChainExpert : public Expert {
 public:
  ChainExpert(std::vector<std::unique_ptr<Expert>> parts, std::string spec) : parts_(std::move(parts)), spec_(std::move(spec)) {}
  std::string spec() const override { return spec_; }
  torch::Tensor encode(const data::Batch& b) override {
    data::Batch cur = b;
    for (size_t i = 0; i + 1 < parts_.size(); ++i) cur = parts_[i]->transform(cur);
    return parts_.back()->encode(cur);
  }
  json fingerprint() const override {
    json parts = json::array();
    for (const auto& p : parts_) parts.push_back(p->fingerprint());
    return json{{"spec", spec_}, {"chain", parts}};
  }

 private:
  std::vector<std::unique_ptr<Expert>> parts_;
  std::string spec_;
};

// ---------------------------------------------------------------- the engine's kinds
std::unique_ptr<Expert> make_label(const std::string& arg, const std::string& spec, const ExpertContext& context) {
  return std::make_unique<LabelExpert>(arg.empty() ? context.num_classes : parse_positive(arg, spec), spec);
}

std::unique_ptr<Expert> make_text_hash(const std::string& arg, const std::string& spec, const ExpertContext&) {
  return std::make_unique<TextHashExpert>(arg.empty() ? 256 : parse_positive(arg, spec), spec);
}

std::unique_ptr<Expert> make_columns(const std::string& arg, const std::string& spec, const ExpertContext&) {
  const auto colon = arg.find(':');
  auto bad = [&] { return UsageError("expert '" + spec + "': use columns:FIRST:END with 0 <= FIRST < END (END excluded)"); };
  if (colon == std::string::npos) throw bad();
  int64_t first = -1, end = -1;
  try {
    size_t used = 0;
    first = std::stoll(arg.substr(0, colon), &used);
    if (used != colon) throw bad();
    const std::string tail = arg.substr(colon + 1);
    end = std::stoll(tail, &used);
    if (used != tail.size()) throw bad();
  } catch (const std::logic_error&) {
    throw bad();
  }
  if (first < 0 || end <= first) throw bad();
  return std::make_unique<ColumnsExpert>(first, end, spec);
}

std::unique_ptr<Expert> make_torchscript(const std::string& arg, const std::string& spec, const ExpertContext& context) {
  if (arg.empty()) throw UsageError("expert '" + spec + "': use ts:PATH[:METHOD]");
  // ts:PATH:METHOD, where METHOD is an identifier after the last ':' (paths may hold ':').
  std::string path = arg, method;
  auto last = arg.rfind(':');
  if (last != std::string::npos) {
    std::string tail = arg.substr(last + 1);
    bool ident = !tail.empty() && (std::isalpha(static_cast<unsigned char>(tail[0])) || tail[0] == '_');
    for (char c : tail) ident = ident && (std::isalnum(static_cast<unsigned char>(c)) || c == '_');
    if (ident) path = arg.substr(0, last), method = tail;
  }
  return std::make_unique<TorchScriptExpert>(path, method, spec, context.device);
}

void register_engine_experts(ExpertRegistry& registry) {
  registry.add({"label", "label[:K]", "one-hot [N, K] of the label; K defaults to the source's class count", make_label});
  registry.add({"text-hash", "text-hash[:DIM]", "weight-free hashed text embedding [N, DIM], default DIM 256", make_text_hash});
  registry.add(no_argument_kind<IdentityExpert>("identity", "the items themselves (or a tsv source's numeric columns)"));
  registry.add({"columns", "columns:FIRST:END", "columns FIRST..END-1 of each item's vector (e.g. columns:10:12)", make_columns});
  registry.add({"ts", "ts:PATH[:METHOD]", "a TorchScript module's METHOD (default encode, else forward)", make_torchscript});
}

}  // namespace

void ExpertRegistry::add(ExpertKind kind) {
  if (find(kind.name)) throw std::logic_error("expert kind '" + kind.name + "' is registered twice");
  kinds_.push_back(std::move(kind));
}

const ExpertKind* ExpertRegistry::find(const std::string& name) const {
  for (const auto& k : kinds_)
    if (k.name == name) return &k;
  return nullptr;
}

const ExpertRegistry& expert_registry() {
  static const ExpertRegistry registry = [] {
    ExpertRegistry r;
    register_engine_experts(r);
    example::register_example_experts(r);
    return r;
  }();
  return registry;
}

std::string expert_usages() {
  std::string out;
  for (const auto& k : expert_registry().kinds()) out += k.usage + ", ";
  return out + "or a chain " + kChainUsage;
}

std::unique_ptr<Expert> make_expert(const std::string& spec, const ExpertContext& context) {
  if (spec.empty()) throw UsageError("empty expert spec");
  if (spec.find(',') != std::string::npos) {
    std::vector<std::unique_ptr<Expert>> parts;
    size_t s = 0;
    while (true) {
      auto c = spec.find(',', s);
      std::string part = spec.substr(s, c == std::string::npos ? std::string::npos : c - s);
      if (part.empty()) throw UsageError("expert chain '" + spec + "' has an empty link");
      parts.push_back(make_expert(part, context));
      if (c == std::string::npos) break;
      s = c + 1;
    }
    return std::make_unique<ChainExpert>(std::move(parts), spec);
  }
  auto colon = spec.find(':');
  const std::string name = spec.substr(0, colon);
  const std::string arg = colon == std::string::npos ? "" : spec.substr(colon + 1);
  if (const ExpertKind* kind = expert_registry().find(name)) return kind->make(arg, spec, context);
  throw UsageError("unknown expert '" + spec + "'; experts: " + expert_usages());
}

}  // namespace net2net::experts
