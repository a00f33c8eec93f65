// The pretrained text expert: sentence-BERT all-MiniLM-L6-v2 exported by
// scripts/experts/export_sbert.py (tokenizer inside the TorchScript file) against the package's
// own pipeline (sentence-transformers), whose output for 208 texts is committed in
// tests/data/sbert/ with the script that made it (scripts/experts/sbert_reference.py).
// The exported file lives outside the repository: scripts/run_tests.sh exports it once
// (scripts/setup_sbert.sh) and passes its path in NET2NET_SBERT.
#include <gtest/gtest.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <cstdlib>
#include <fstream>

#include "net2net/data/source.h"
#include "net2net/experts/expert.h"
#include "net2net/io/embedding_store.h"
#include "test_util.h"

using namespace net2net;
using test::TempDir;

namespace {

const std::string kExtract = std::string(NET2NET_TOOL_DIR) + "/net2net-extract/net2net-extract";
const std::string kRefDir = std::string(NET2NET_SOURCE_DIR) + "/tests/data/sbert";

// The exported module's path, or "" (the test then skips, or fails where CI demands it).
std::string sbert_path() {
  const char* p = std::getenv("NET2NET_SBERT");
  return p && *p ? std::string(p) : std::string();
}

#define NET2NET_REQUIRE_SBERT(path)                                                                         \
  const std::string path = sbert_path();                                                                    \
  if (path.empty()) {                                                                                       \
    const char* req = std::getenv("NET2NET_REQUIRE_SBERT");                                                 \
    if (req && std::string(req) == "1") FAIL() << "NET2NET_SBERT is not set but NET2NET_REQUIRE_SBERT=1";  \
    GTEST_SKIP() << "NET2NET_SBERT not set (scripts/run_tests.sh exports the model: scripts/setup_sbert.sh)"; \
  }

std::vector<std::string> sentences() {
  std::ifstream in(kRefDir + "/sentences.txt", std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), {}), line;
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t nl; (nl = all.find('\n', start)) != std::string::npos; start = nl + 1) out.push_back(all.substr(start, nl - start));
  return out;
}

torch::Tensor rows_of(const std::string& file, const std::string& dataset, bool aligned) {
  io::EmbeddingReader r(file, aligned);
  auto info = r.info(dataset);
  auto v = r.read_rows(dataset, 0, info.rows);
  return torch::from_blob(v.data(), {info.rows, info.cols}, torch::kFloat32).clone();
}

// Per row: cosine >= 0.9999 and max |difference| <= 1e-4 (the bar), naming the text.
void expect_close_to_reference(const torch::Tensor& got, const std::vector<std::string>& texts) {
  auto ref = rows_of(kRefDir + "/reference.h5", "embedding", /*aligned=*/false);
  ASSERT_EQ(got.sizes(), ref.sizes());
  auto cos = torch::cosine_similarity(got, ref, 1);
  auto diff = (got - ref).abs().amax(1);
  for (int64_t i = 0; i < got.size(0); ++i) {
    EXPECT_GE(cos[i].item<double>(), 0.9999) << "row " << i << ": '" << texts[i] << "'";
    EXPECT_LE(diff[i].item<double>(), 1e-4) << "row " << i << ": '" << texts[i] << "'";
  }
}

}  // namespace

TEST(SentenceBert, TokenIdsEqualThePackagesTokenizer) {
  NET2NET_REQUIRE_SBERT(path);
  auto texts = sentences();
  io::EmbeddingReader ref(kRefDir + "/reference.h5", /*aligned=*/false);
  auto ids = ref.read_int64("token_ids");
  auto offsets = ref.read_int64("token_offsets");
  ASSERT_EQ(offsets.size(), texts.size() + 1);
  auto module = torch::jit::load(path);
  for (size_t i = 0; i < texts.size(); ++i) {
    auto got = module.get_method("tokenize")({texts[i]}).toIntVector();
    std::vector<int64_t> want(ids.begin() + offsets[i], ids.begin() + offsets[i + 1]);
    EXPECT_EQ(got, want) << "row " << i << ": '" << texts[i] << "'";
  }
  // The text past max_seq_length was cut to exactly 256 ids, [SEP] last.
  size_t longest = 0;
  for (size_t i = 0; i < texts.size(); ++i) longest = std::max<size_t>(longest, offsets[i + 1] - offsets[i]);
  EXPECT_EQ(longest, 256u);
}

TEST(SentenceBert, ExtractionMatchesThePackagesPipeline) {
  NET2NET_REQUIRE_SBERT(path);
  TempDir dir("sbert_extract");
  auto texts = sentences();
  ASSERT_GE(texts.size(), 200u);
  ASSERT_EQ(test::shell("'" + kExtract + "' --data text:tests/data/sbert/sentences.txt --expert e=ts:'" + path +
                        "' --expert b=ts:'" + path + "':encode_batched --batch-size 64 --log-level warn --out '" +
                        (dir / "s.h5") + "'"),
            0);
  {
    SCOPED_TRACE("encode (each text alone)");
    expect_close_to_reference(rows_of(dir / "s.h5", "e", true), texts);
  }
  {
    SCOPED_TRACE("encode_batched");
    expect_close_to_reference(rows_of(dir / "s.h5", "b", true), texts);
  }
}

TEST(SentenceBert, EncodeIsIndependentOfTheBatch) {
  // What makes resumed extractions bit-identical: a text's vector is the same in any batch.
  NET2NET_REQUIRE_SBERT(path);
  auto texts = sentences();
  auto expert = experts::make_expert("ts:" + path);
  data::Batch all, some;
  all.kind = some.kind = data::ItemKind::Text;
  all.texts = {texts[0], texts[1], texts[2], texts[3]};
  all.index = {0, 1, 2, 3};
  auto a = expert->encode(all);
  auto fresh = experts::make_expert("ts:" + path);  // nothing remembered
  some.texts = {texts[3], texts[1]};
  some.index = {0, 1};
  auto b = fresh->encode(some);
  EXPECT_TRUE(torch::equal(b[0], a[3]));
  EXPECT_TRUE(torch::equal(b[1], a[1]));
  // Repeated texts (captions repeat) are remembered: the same vector, not recomputed.
  auto again = expert->encode(all);
  EXPECT_TRUE(torch::equal(again, a));
}

TEST(SentenceBert, InvalidUtf8IsDroppedNotACrash) {
  // Bytes that are not UTF-8 become U+FFFD, which BERT's normaliser removes (a Python str could
  // not hold them; net2net reads raw bytes from text files).
  NET2NET_REQUIRE_SBERT(path);
  auto module = torch::jit::load(path);
  auto clean = module.get_method("tokenize")({std::string("a coat")}).toIntVector();
  auto dirty = module.get_method("tokenize")({std::string("a \xff\xc3 co\x80" "at")}).toIntVector();
  EXPECT_EQ(dirty, clean);
}
