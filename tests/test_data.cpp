// The embedding store, the data sources and the experts, against independent computations
// (h5py, sha256sum, closed forms, hand-built fixtures); the source and expert registries against
// net2net-extract --help and the docs' tables.
#include <H5Cpp.h>
#include <gtest/gtest.h>
#include <stb/stb_image_write.h>
#include <torch/script.h>
#include <torch/torch.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>
#include <sstream>
#include <stdexcept>

#include "net2net/cli/options.h"
#include "net2net/core/error.h"
#include "net2net/data/source.h"
#include "net2net/experts/expert.h"
#include "net2net/io/embedding_store.h"
#include "net2net/train/trainer.h"
#include "test_util.h"

using namespace net2net;
namespace fs = std::filesystem;
using nlohmann::json;
using test::TempDir;

// ------------------------------------------------------------------ store
TEST(Store, RoundTripWithSizesThatDoNotDivideTheChunk) {
  TempDir dir("store");
  auto path = dir / "a.h5";
  std::vector<float> all;
  for (int i = 0; i < 23 * 3; ++i) all.push_back(std::sin(0.1f * i));
  io::WriterOptions o;
  o.chunk_rows = 7;
  o.compression = 4;
  io::write_store(path, o, [&](io::EmbeddingWriter& w) {
    w.create_float("emb", 3);
    w.create_float("img", 4, {1, 2, 2});
    w.create_int64("label");
    int done = 0;
    for (int n : {5, 1, 17}) {
      w.append_float("emb", all.data() + done * 3, n);
      std::vector<float> img(n * 4, 1.5f);
      w.append_float("img", img.data(), n);
      std::vector<int64_t> lab(n);
      for (int k = 0; k < n; ++k) lab[k] = (done + k) * 3;
      w.append_int64("label", lab.data(), n);
      done += n;
    }
    w.set_attribute("source", "test");
    w.set_attribute("answer", 42);
    w.set_attribute("ratio", 0.25);
    w.set_attribute("list", json::array({1, 2}));
  });
  io::EmbeddingReader r(path);
  EXPECT_EQ(r.rows(), 23);
  EXPECT_EQ(r.read_rows("emb", 0, 23), all);
  auto info = r.info("img");
  EXPECT_EQ(info.cols, 4);
  EXPECT_EQ(info.item_shape, (std::vector<int64_t>{1, 2, 2}));
  // Random access: any order, repeats, one row.
  std::vector<int64_t> idx = {22, 0, 7, 7, 8, 13, 1};
  auto picked = r.read_rows("/emb", idx);
  for (size_t k = 0; k < idx.size(); ++k)
    for (int j = 0; j < 3; ++j) EXPECT_EQ(picked[k * 3 + j], all[idx[k] * 3 + j]);
  EXPECT_EQ(r.read_rows("emb", 22, 1), std::vector<float>(all.end() - 3, all.end()));
  auto lab = r.read_int64("label");
  ASSERT_EQ(lab.size(), 23u);
  EXPECT_EQ(lab[22], 66);
  auto a = r.attributes();
  EXPECT_EQ(a["source"], "test");
  EXPECT_EQ(a["answer"], 42);
  EXPECT_DOUBLE_EQ(a["ratio"].get<double>(), 0.25);
  EXPECT_EQ(json::parse(a["list"].get<std::string>()), json::array({1, 2}));
  EXPECT_EQ(a["format"], io::kEmbeddingFormat);
  EXPECT_EQ(a["complete"], 1);
  EXPECT_THROW(r.read_rows("emb", 20, 4), InputError);
}

TEST(Store, OneRowAndEmpty) {
  TempDir dir("store1");
  io::write_store(dir / "one.h5", {}, [](io::EmbeddingWriter& w) {
    w.create_float("x", 2);
    float v[2] = {1.f, -2.f};
    w.append_float("x", v, 1);
  });
  EXPECT_EQ(io::EmbeddingReader(dir / "one.h5").read_rows("x", 0, 1), (std::vector<float>{1.f, -2.f}));
  io::write_store(dir / "empty.h5", {}, [](io::EmbeddingWriter& w) { w.create_float("x", 2); });
  io::EmbeddingReader e(dir / "empty.h5");
  EXPECT_EQ(e.rows(), 0);
  EXPECT_TRUE(e.read_rows("x", 0, 0).empty());
  EXPECT_TRUE(e.read_rows("x", std::vector<int64_t>{}).empty());
}

TEST(Store, IncompleteMisalignedMissingAndForeignFilesAreRefused) {
  TempDir dir("storebad");
  {
    io::EmbeddingWriter w(dir / "partial.h5", {});  // never finished
    w.create_float("x", 2);
  }
  try {
    io::EmbeddingReader r(dir / "partial.h5");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("incomplete"), std::string::npos) << e.what();
  }
  io::write_store(dir / "misaligned.h5", {}, [](io::EmbeddingWriter& w) {
    w.create_float("a", 1);
    w.create_float("b", 1);
    float v[3] = {1, 2, 3};
    w.append_float("a", v, 3);
    w.append_float("b", v, 2);
  });
  try {
    io::EmbeddingReader r(dir / "misaligned.h5");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("aligned"), std::string::npos) << e.what();
  }
  io::write_store(dir / "ok.h5", {}, [](io::EmbeddingWriter& w) { w.create_float("a", 1); });
  try {
    io::EmbeddingReader(dir / "ok.h5").info("nope");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("'/nope'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("/a"), std::string::npos) << e.what();
  }
  std::ofstream(dir / "text.h5") << "hello";
  EXPECT_THROW(io::EmbeddingReader(dir / "text.h5"), IoError);
  EXPECT_THROW(io::EmbeddingReader(dir / "missing.h5"), IoError);
}

TEST(Store, ReadsWhatH5pyWrites) {
  NET2NET_REQUIRE_PYTHON("h5py");
  TempDir dir("h5py_in");
  ASSERT_EQ(test::run_python("tests/python/h5_interop.py write " + dir.str()), 0);
  for (const char* name : {"with_attrs.h5", "plain.h5"}) {
    SCOPED_TRACE(name);
    io::EmbeddingReader r(dir / name);
    ASSERT_EQ(r.rows(), 37);
    auto v = r.read_rows("emb", 0, 37);
    for (int i = 0; i < 37; ++i)
      for (int j = 0; j < 5; ++j) EXPECT_EQ(v[i * 5 + j], static_cast<float>(std::sin(0.37 * i + 1.3 * j)));
    auto lab = r.read_int64("label");
    for (int i = 0; i < 37; ++i) EXPECT_EQ(lab[i], i % 7);
  }
  EXPECT_EQ(io::EmbeddingReader(dir / "with_attrs.h5").attributes()["source"], "h5py-test");
}

namespace {
// The message of the InputError that f throws ("" when it throws none; any other exception
// fails the test).
template <class F>
std::string input_error(F f) {
  try {
    f();
  } catch (const InputError& e) {
    EXPECT_EQ(e.exit_code(), 2);
    return e.what();
  }
  return "";
}
bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }
}  // namespace

// Files written with the HDF5 API directly, holding what EmbeddingWriter never writes (h5py or a
// damaged file can): each is refused with an InputError naming the file and the dataset.
TEST(Store, MalformedDatasetsAreRefusedNamingTheFileAndDataset) {
  TempDir dir("store_malformed");
  H5::Exception::dontPrint();
  // A scalar (rank 0) has no rows: read_rows indexed its empty shape.
  const std::string scalar = dir / "scalar.h5";
  {
    H5::H5File f(scalar, H5F_ACC_TRUNC);
    float v = 1.f;
    f.createDataSet("s", H5::PredType::IEEE_F32LE, H5::DataSpace(H5S_SCALAR)).write(&v, H5::PredType::NATIVE_FLOAT);
  }
  for (bool aligned : {false, true}) {
    std::string msg = input_error([&] { io::EmbeddingReader(scalar, aligned).info("s"); });
    EXPECT_TRUE(has(msg, scalar) && has(msg, "'/s'") && has(msg, "dimensions")) << msg;
  }
  // [2^20, 2^30] declared (chunked, nothing stored): more values than could be read.
  const std::string huge = dir / "huge.h5";
  {
    H5::H5File f(huge, H5F_ACC_TRUNC);
    hsize_t dims[2] = {hsize_t(1) << 20, hsize_t(1) << 30}, chunk[2] = {1, 1024};
    H5::DSetCreatPropList plist;
    plist.setChunk(2, chunk);
    f.createDataSet("x", H5::PredType::IEEE_F32LE, H5::DataSpace(2, dims), plist);
  }
  std::string msg = input_error([&] { io::EmbeddingReader(huge, false).info("x"); });
  EXPECT_TRUE(has(msg, huge) && has(msg, "'/x'") && has(msg, "2^40")) << msg;
  // An attribute "shape" that does not multiply to the row's values (or holds entries <= 0): the
  // h5 source shapes its rows with it.
  for (const std::vector<int64_t>& shape : {std::vector<int64_t>{2, 3}, std::vector<int64_t>{-2, -2}, std::vector<int64_t>{1, 2, 2}}) {
    const std::string file = dir / "shape.h5";
    {
      H5::H5File f(file, H5F_ACC_TRUNC);
      hsize_t dims[2] = {3, 4}, n = shape.size();
      std::vector<float> v(12, 0.5f);
      auto ds = f.createDataSet("img", H5::PredType::IEEE_F32LE, H5::DataSpace(2, dims));
      ds.write(v.data(), H5::PredType::NATIVE_FLOAT);
      ds.createAttribute("shape", H5::PredType::STD_I64LE, H5::DataSpace(1, &n)).write(H5::PredType::NATIVE_INT64, shape.data());
    }
    msg = input_error([&] { data::open_source("h5:" + file + ":img"); });
    if (shape.size() == 3) {
      EXPECT_EQ(msg, "");  // [1, 2, 2] is right
      EXPECT_EQ(io::EmbeddingReader(file).info("img").item_shape, shape);
    } else {
      EXPECT_TRUE(has(msg, file) && has(msg, "'/img'") && has(msg, "attribute 'shape'")) << msg;
    }
  }
  // A link HDF5 cannot follow: its exception became the tool's exit 1.
  const std::string dangling = dir / "dangling.h5";
  {
    H5::H5File f(dangling, H5F_ACC_TRUNC);
    hsize_t dims[2] = {2, 1};
    float v[2] = {1, 2};
    f.createDataSet("a", H5::PredType::IEEE_F32LE, H5::DataSpace(2, dims)).write(v, H5::PredType::NATIVE_FLOAT);
    ASSERT_GE(H5Lcreate_soft("/nowhere", f.getId(), "b", H5P_DEFAULT, H5P_DEFAULT), 0);
  }
  msg = input_error([&] { io::EmbeddingReader r(dangling); });
  EXPECT_TRUE(has(msg, dangling)) << msg;
  // Rows past the end, however far: start + count overflowed and got past the range check.
  io::write_store(dir / "ok.h5", {}, [](io::EmbeddingWriter& w) {
    w.create_float("z", 2);
    float v[4] = {1, 2, 3, 4};
    w.append_float("z", v, 2);
  });
  io::EmbeddingReader ok(dir / "ok.h5");
  msg = input_error([&] { ok.read_rows("z", INT64_MAX, 1); });
  EXPECT_TRUE(has(msg, dir / "ok.h5") && has(msg, "'/z'") && has(msg, "out of range")) << msg;
  msg = input_error([&] { ok.read_rows("z", std::vector<int64_t>{1, INT64_MAX}); });
  EXPECT_TRUE(has(msg, dir / "ok.h5") && has(msg, "'/z'") && has(msg, std::to_string(INT64_MAX))) << msg;
  // A float "complete" is compared as a float (its cast to an integer was undefined for 1e300).
  for (double complete : {1e300, 0.0}) {
    const std::string file = dir / "complete.h5";
    {
      H5::H5File f(file, H5F_ACC_TRUNC);
      f.createAttribute("complete", H5::PredType::IEEE_F64LE, H5::DataSpace(H5S_SCALAR)).write(H5::PredType::NATIVE_DOUBLE, &complete);
    }
    msg = input_error([&] { io::EmbeddingReader r(file); });
    EXPECT_EQ(has(msg, "incomplete"), complete == 0.0) << msg;
  }
}

// Provenance attributes of another type than the string they should be (a number, say) count
// as absent in net2net-train's view of a cache and in the h5 source; so do such entries of
// "experts". They threw nlohmann's type_error (the tool's exit 1).
TEST(Store, ProvenanceAttributesOfAnotherTypeCountAsAbsent) {
  TempDir dir("store_provenance");
  auto cache = [&](const std::string& name, const json& experts, const json& class_names) {
    const std::string file = dir / name;
    io::write_store(file, {}, [&](io::EmbeddingWriter& w) {
      w.create_float("c", 2);
      w.create_float("x", 3);
      w.create_int64("label");
      std::vector<float> c(8, 0.5f), x(12, -0.5f);
      int64_t l[4] = {0, 1, 2, 3};
      w.append_float("c", c.data(), 4);
      w.append_float("x", x.data(), 4);
      w.append_int64("label", l, 4);
      w.set_attribute("experts", experts);
      w.set_attribute("class_names", class_names);
    });
    const std::string config = dir / (name + ".json");
    std::ofstream(config) << json{{"data", {{"train", file}, {"condition", "c"}, {"target", "x"}}}}.dump();
    return std::pair{file, config};
  };
  // Numbers where strings holding JSON belong.
  auto [numbers, numbers_config] = cache("numbers.h5", 5, 7);
  json config;
  ASSERT_NO_THROW(config = train::prepare_config(numbers_config, {}, false, 0));
  EXPECT_EQ(config["model"]["cond_dim"], 2);
  EXPECT_TRUE(config["data"]["condition_expert"].is_null());
  EXPECT_TRUE(config["data"]["class_names"].is_null());
  std::unique_ptr<data::Source> source;
  ASSERT_NO_THROW(source = data::open_source("h5:" + numbers + ":c"));
  EXPECT_TRUE(source->class_names().empty());
  EXPECT_EQ(source->num_classes(), 4);
  // Entries whose name or spec is no string.
  auto [entries, entries_config] = cache("entries.h5",
                                         R"([{"name": 1, "spec": "label"}, {"name": "c", "spec": 2}, {"name": "x", "spec": "identity"}])",
                                         R"(["a", 3])");
  ASSERT_NO_THROW(config = train::prepare_config(entries_config, {}, false, 0));
  EXPECT_EQ(config["data"]["condition_expert"], "");  // as for an entry without a spec
  EXPECT_EQ(config["data"]["target_expert"], "identity");
  EXPECT_TRUE(config["data"]["class_names"].is_null());  // not all strings
  EXPECT_EQ(data::open_source("h5:" + entries + ":c")->class_names(), std::vector<std::string>{"a"});
}

// ------------------------------------------------------------------ sources
namespace {
void write_gz(const fs::path& p, const std::vector<uint8_t>& bytes) {
  gzFile f = gzopen(p.c_str(), "wb");
  gzwrite(f, bytes.data(), bytes.size());
  gzclose(f);
}
void put32(std::vector<uint8_t>& b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back((v >> s) & 255);
}
// A 3-image, 4x5 Fashion-MNIST look-alike with pixel (r, c) of image i = 10 i + 3 r + c.
fs::path make_fashion_fixture(const TempDir& dir) {
  std::vector<uint8_t> img, lab;
  put32(img, 2051), put32(img, 3), put32(img, 4), put32(img, 5);
  for (int i = 0; i < 3; ++i)
    for (int r = 0; r < 4; ++r)
      for (int c = 0; c < 5; ++c) img.push_back(10 * i + 3 * r + c);
  put32(lab, 2049), put32(lab, 3);
  for (uint8_t l : {7, 0, 9}) lab.push_back(l);
  write_gz(dir / "train-images-idx3-ubyte.gz", img);
  write_gz(dir / "train-labels-idx1-ubyte.gz", lab);
  return dir.path();
}
}  // namespace

TEST(Sources, FashionMnistFromGzippedIdx) {
  TempDir dir("fmnist");
  data::SourceOptions o;
  o.data_dir = make_fashion_fixture(dir).string();
  auto s = data::open_source("fashion-mnist:train", o);
  EXPECT_EQ(s->size(), 3);
  EXPECT_EQ(s->num_classes(), 10);
  auto b = s->get({2, 0});
  EXPECT_EQ(b.tensor.sizes(), (std::vector<int64_t>{2, 1, 4, 5}));
  EXPECT_EQ(b.labels[0].item<int64_t>(), 9);
  EXPECT_EQ(b.labels[1].item<int64_t>(), 7);
  EXPECT_FLOAT_EQ(b.tensor[0][0][3][4].item<float>(), (20 + 9 + 4) / 127.5f - 1.f);
  EXPECT_FLOAT_EQ(b.tensor[1][0][0][0].item<float>(), -1.f);
  EXPECT_THROW(s->get({3}), InputError);
  EXPECT_THROW(data::open_source("fashion-mnist:test", o), IoError);  // no t10k files in the fixture
  EXPECT_THROW(data::open_source("fashion-mnist:valid", o), UsageError);
}

TEST(Sources, CorruptOrTruncatedGzipIsNamed) {
  TempDir dir("fmnist_bad");
  make_fashion_fixture(dir);
  auto img = dir / "train-images-idx3-ubyte.gz";
  auto size = fs::file_size(img);
  fs::resize_file(img, size - 6);  // cut the gzip trailer and some data
  data::SourceOptions o;
  o.data_dir = dir.str();
  try {
    data::open_source("fashion-mnist:train", o);
    FAIL() << "truncated gzip accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.exit_code(), 2);
    EXPECT_NE(std::string(e.what()).find(img), std::string::npos) << e.what();
  }
  std::ofstream(img, std::ios::trunc) << "this is not gzip data at all";
  EXPECT_THROW(data::open_source("fashion-mnist:train", o), InputError);
}

TEST(Sources, TheDebianFashionMnist) {
  if (!fs::exists(data::default_fashion_mnist_dir() + "/t10k-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "dataset-fashion-mnist not installed (scripts/setup.sh installs it)";
  auto s = data::open_source("fashion-mnist:test");
  EXPECT_EQ(s->size(), 10000);
  auto b = s->get({0, 9999});
  EXPECT_EQ(b.tensor.sizes(), (std::vector<int64_t>{2, 1, 28, 28}));
  EXPECT_GE(b.tensor.min().item<float>(), -1.f);
  EXPECT_LE(b.tensor.max().item<float>(), 1.f);
}

TEST(Sources, ImageFolderPngAndJpeg) {
  TempDir dir("images");
  // b.png: grey 3x2 with value 40 c + 7 r; a.png sorts first.
  std::vector<uint8_t> grey(6), rgb(18);
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 3; ++c) grey[r * 3 + c] = 40 * c + 7 * r;
  for (int k = 0; k < 18; ++k) rgb[k] = 14 * k;
  ASSERT_TRUE(stbi_write_png((dir / "b.png").c_str(), 3, 2, 1, grey.data(), 3));
  ASSERT_TRUE(stbi_write_png((dir / "a.png").c_str(), 3, 2, 1, grey.data(), 3));
  auto s = data::open_source("images:" + dir.str());
  EXPECT_EQ(s->size(), 2);
  auto b = s->get({1});
  EXPECT_EQ(b.tensor.sizes(), (std::vector<int64_t>{1, 1, 2, 3}));
  EXPECT_FLOAT_EQ(b.tensor[0][0][1][2].item<float>(), (80 + 7) / 127.5f - 1.f);
  // Colour files become [3,H,W]; a JPEG is close to what was written.
  TempDir cdir("images_rgb");
  ASSERT_TRUE(stbi_write_png((cdir / "x.png").c_str(), 3, 2, 3, rgb.data(), 9));
  auto c = data::open_source("images:" + cdir.str())->get({0}).tensor;
  EXPECT_EQ(c.sizes(), (std::vector<int64_t>{1, 3, 2, 3}));
  EXPECT_FLOAT_EQ(c[0][2][1][0].item<float>(), 14 * 11 / 127.5f - 1.f);  // channel 2 of pixel (1, 0) = byte 11
  std::vector<uint8_t> flat(16 * 16, 100);
  ASSERT_TRUE(stbi_write_jpg((cdir / "y.jpg").c_str(), 16, 16, 1, flat.data(), 100));
  auto j = data::read_image((cdir / "y.jpg"));
  EXPECT_NEAR(j.mean().item<float>(), 100 / 127.5f - 1.f, 0.02);
  // A file of another size, and a broken file, are named.
  std::vector<uint8_t> big(16);
  ASSERT_TRUE(stbi_write_png((dir / "c.png").c_str(), 4, 4, 1, big.data(), 4));
  try {
    data::open_source("images:" + dir.str())->get({2});
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("c.png"), std::string::npos) << e.what();
  }
  std::ofstream(dir / "d.png") << "not a png";
  EXPECT_THROW(data::open_source("images:" + dir.str())->get({3}), InputError);
  EXPECT_THROW(data::open_source("images:" + (dir / "nope")), IoError);
}

// imagefolder:DIR (labels and names from the sub-folders), --image-size (shorter side, centre
// crop), --image-mode, and --skip-bad.
TEST(Sources, ImageFolderLabelsResizeCropModeAndSkippedFiles) {
  TempDir dir("imagefolder");
  fs::create_directories(fs::path(dir / "boot"));
  fs::create_directories(fs::path(dir / "coat/more"));
  // A horizontal ramp 8 wide, 4 high, grey: value 30 x.
  std::vector<uint8_t> ramp(32);
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 8; ++x) ramp[y * 8 + x] = 30 * x;
  ASSERT_TRUE(stbi_write_png((dir / "boot/b.png").c_str(), 8, 4, 1, ramp.data(), 8));
  std::vector<uint8_t> rgb(6 * 6 * 3);
  for (size_t k = 0; k < rgb.size(); ++k) rgb[k] = k % 3 == 0 ? 200 : 20;  // red
  ASSERT_TRUE(stbi_write_png((dir / "coat/a.png").c_str(), 6, 6, 3, rgb.data(), 18));
  ASSERT_TRUE(stbi_write_png((dir / "coat/more/c.png").c_str(), 6, 6, 3, rgb.data(), 18));
  data::SourceOptions o;
  o.image_size = 4;
  o.image_mode = "grey";
  auto s = data::open_source("imagefolder:" + dir.str(), o);
  EXPECT_EQ(s->size(), 3);
  EXPECT_TRUE(s->has_labels());
  EXPECT_EQ(s->class_names(), (std::vector<std::string>{"boot", "coat"}));
  auto b = s->get({0, 1, 2});
  EXPECT_EQ(b.tensor.sizes(), (std::vector<int64_t>{3, 1, 4, 4}));
  EXPECT_EQ(std::vector<int64_t>(b.labels.data_ptr<int64_t>(), b.labels.data_ptr<int64_t>() + 3),
            (std::vector<int64_t>{0, 1, 1}));
  // The ramp is 4 high already: no resize, the centre 4 columns (x = 2..5) are kept.
  for (int x = 0; x < 4; ++x) EXPECT_FLOAT_EQ(b.tensor[0][0][1][x].item<float>(), 30 * (x + 2) / 127.5f - 1.f) << x;
  // 6x6 red -> 4x4: a constant image stays constant; grey is stb's luminance of (200, 20, 20).
  const float lum = (200 * 77 + 20 * 150 + 20 * 29) >> 8;
  EXPECT_NEAR(b.tensor[1].min().item<float>(), lum / 127.5f - 1.f, 1e-5);
  EXPECT_NEAR(b.tensor[1].max().item<float>(), lum / 127.5f - 1.f, 1e-5);
  // Downscaling a ramp by 2 keeps a ramp: inner pixels are the means of the pixel pairs.
  TempDir flat("imageflat");
  std::vector<uint8_t> wide(8 * 16);
  for (int y = 0; y < 8; ++y)
    for (int x = 0; x < 16; ++x) wide[y * 16 + x] = 10 * x;
  ASSERT_TRUE(stbi_write_png((flat / "w.png").c_str(), 16, 8, 1, wide.data(), 16));
  o.image_mode = "rgb";
  auto w = data::open_source("images:" + flat.str(), o)->get({0}).tensor[0];
  EXPECT_EQ(w.sizes(), (std::vector<int64_t>{3, 4, 4}));  // 16x8 -> 8x4, centre crop 4x4 (x = 2..5 of 8)
  EXPECT_TRUE(torch::equal(w[0], w[2]));
  for (int x = 1; x < 3; ++x)  // resized column x + 2 covers source columns 2(x+2), 2(x+2)+1
    EXPECT_NEAR(w[0][2][x].item<float>(), (10 * (2 * (x + 2)) + 5) / 127.5f - 1.f, 0.02) << x;
  // An unreadable file is named, or skipped with --skip-bad; so is another size without --image-size.
  std::ofstream(dir / "coat/broken.png") << "not a png";
  try {
    data::open_source("imagefolder:" + dir.str(), o);
    FAIL() << "a broken file was accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("broken.png"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("--skip-bad"), std::string::npos) << e.what();
  }
  o.skip_bad = true;
  EXPECT_EQ(data::open_source("imagefolder:" + dir.str(), o)->size(), 3);
  o.image_size = 0;  // 8x4 and 6x6 differ: with --skip-bad the odd ones go
  EXPECT_EQ(data::open_source("imagefolder:" + dir.str(), o)->size(), 1);
  o.skip_bad = false;
  EXPECT_THROW(data::open_source("imagefolder:" + dir.str(), o), InputError);
  EXPECT_THROW(data::open_source("imagefolder:" + flat.str()), InputError);  // no class sub-folders
  fs::create_directories(fs::path(dir / "empty"));  // a class without images, as torchvision refuses
  o.skip_bad = true;
  EXPECT_THROW(data::open_source("imagefolder:" + dir.str(), o), InputError);
}

TEST(Sources, TextLines) {
  TempDir dir("text");
  std::ofstream(dir / "t.txt") << "a dark shirt\r\n\nlight trousers";
  auto s = data::open_source("text:" + (dir / "t.txt"));
  ASSERT_EQ(s->size(), 3);
  auto b = s->get({2, 0, 1});
  EXPECT_EQ(b.texts, (std::vector<std::string>{"light trousers", "a dark shirt", ""}));
  std::ofstream(dir / "u.txt") << "one\ntwo\n";
  EXPECT_EQ(data::open_source("text:" + (dir / "u.txt"))->size(), 2);
  EXPECT_THROW(data::open_source("text:" + (dir / "missing.txt")), IoError);
}

TEST(Sources, TsvTextsWithLabelsAndNumericColumns) {
  TempDir dir("tsv");
  // Columns in any order; the numeric ones in header order, whatever their position.
  std::ofstream(dir / "p.tsv") << "size\ttext\tlabel\tbrightness\r\n0\tblack jacket\t4\t-1\n1\thuge tote\t8\t0\n-1\t\t0\t1\n";
  auto s = data::open_source("tsv:" + (dir / "p.tsv"));
  ASSERT_EQ(s->size(), 3);
  EXPECT_EQ(s->kind(), data::ItemKind::Text);
  EXPECT_TRUE(s->has_labels());
  EXPECT_EQ(s->num_classes(), 9);
  auto b = s->get({1, 2});
  EXPECT_EQ(b.texts, (std::vector<std::string>{"huge tote", ""}));
  EXPECT_EQ(b.labels[0].item<int64_t>(), 8);
  EXPECT_EQ(b.labels[1].item<int64_t>(), 0);
  EXPECT_TRUE(torch::equal(b.tensor, torch::tensor({1.0f, 0.0f, -1.0f, 1.0f}).reshape({2, 2})));
  // identity passes the numeric columns on; text experts see the texts.
  EXPECT_TRUE(torch::equal(experts::make_expert("identity")->encode(b), b.tensor));
  EXPECT_EQ(experts::make_expert("text-hash:16")->encode(b).size(1), 16);
  // Only texts: no labels, no vectors, and identity says what it cannot do.
  std::ofstream(dir / "t.tsv") << "text\nsome words\n";
  auto t = data::open_source("tsv:" + (dir / "t.tsv"));
  EXPECT_FALSE(t->has_labels());
  EXPECT_FALSE(t->get({0}).tensor.defined());
  EXPECT_THROW(experts::make_expert("identity")->encode(t->get({0})), InputError);
}

TEST(Sources, TsvErrorsNameTheLineAndColumn) {
  TempDir dir("tsv_bad");
  auto message = [&](const std::string& content) {
    std::ofstream(dir / "b.tsv") << content;
    try {
      data::open_source("tsv:" + (dir / "b.tsv"));
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("").find("header"), std::string::npos);
  EXPECT_NE(message("label\tsize\n1\t2\n").find("no 'text' column"), std::string::npos);
  EXPECT_NE(message("text\ttext\na\tb\n").find("appears twice"), std::string::npos);
  EXPECT_NE(message("text\tlabel\nok\t1\nbad\t\n").find("line 3, column 'label'"), std::string::npos);
  EXPECT_NE(message("text\tlabel\nneg\t-2\n").find("line 2, column 'label'"), std::string::npos);
  EXPECT_NE(message("text\tsize\nx\t1.5\ny\tbig\n").find("line 3, column 'size': 'big'"), std::string::npos);
  EXPECT_NE(message("text\tsize\nx\t1\t2\n").find("line 2: 3 fields, the header names 2"), std::string::npos);
  EXPECT_NE(message("text\tsize\nx\tnan\n").find("not a finite number"), std::string::npos);
}

TEST(Sources, H5RowsWithLabels) {
  TempDir dir("h5src");
  io::write_store(dir / "c.h5", {}, [](io::EmbeddingWriter& w) {
    w.create_float("v", 2);
    w.create_float("img", 4, {1, 2, 2});
    w.create_int64("label");
    float v[6] = {1, 2, 3, 4, 5, 6}, img[12] = {0};
    int64_t l[3] = {2, 0, 1};
    w.append_float("v", v, 3);
    w.append_float("img", img, 3);
    w.append_int64("label", l, 3);
  });
  auto s = data::open_source("h5:" + (dir / "c.h5") + ":v");
  EXPECT_EQ(s->kind(), data::ItemKind::Vector);
  EXPECT_EQ(s->num_classes(), 3);
  auto b = s->get({2, 1});
  auto expected = torch::tensor({5.f, 6.f, 3.f, 4.f}).view({2, 2});
  EXPECT_TRUE(torch::equal(b.tensor, expected));
  EXPECT_EQ(b.labels[0].item<int64_t>(), 1);
  EXPECT_EQ(data::open_source("h5:" + (dir / "c.h5") + ":img")->kind(), data::ItemKind::Image);
  EXPECT_THROW(data::open_source("h5:" + (dir / "c.h5") + ":nope"), InputError);
  EXPECT_THROW(data::open_source("h5:nofile"), UsageError);
}

// Sizes and values that overflowed, wrapped or were cast out of range are refused with an
// InputError naming the file (and the line or row).
TEST(Sources, OutOfRangeHeadersLabelsAndValuesAreRefusedNamingTheFile) {
  TempDir dir("sources_range");
  // An IDX header of 65536 images of 2^24 x 2^24: n * h * w wrapped to 0 and matched an empty file.
  {
    std::vector<uint8_t> img, lab;
    put32(img, 2051), put32(img, 65536), put32(img, 1u << 24), put32(img, 1u << 24);
    put32(lab, 2049), put32(lab, 65536);
    lab.resize(lab.size() + 65536, 0);
    write_gz(dir / "train-images-idx3-ubyte.gz", img);
    write_gz(dir / "train-labels-idx1-ubyte.gz", lab);
  }
  data::SourceOptions o;
  o.data_dir = dir.str();
  std::string msg = input_error([&] { data::open_source("fashion-mnist:train", o); });
  EXPECT_TRUE(has(msg, dir / "train-images-idx3-ubyte.gz") && has(msg, "16777216x16777216")) << msg;
  // An image wider than 16384 pixels (batches are allocated at the first file's size).
  TempDir wide("sources_wide");
  std::vector<uint8_t> row(20000, 7);
  ASSERT_TRUE(stbi_write_png((wide / "w.png").c_str(), 20000, 1, 1, row.data(), 20000));
  msg = input_error([&] { data::open_source("images:" + wide.str()); });
  EXPECT_TRUE(has(msg, wide / "w.png") && has(msg, "20000x1")) << msg;
  msg = input_error([&] { data::read_image(wide / "w.png"); });
  EXPECT_TRUE(has(msg, wide / "w.png")) << msg;
  // tsv: labels beyond [0, 2^24) (strtoll saturated, label + 1 overflowed), numbers beyond float.
  const std::string tsv = dir / "p.tsv";
  auto tsv_error = [&](const std::string& content) {
    std::ofstream(tsv, std::ios::trunc) << content;
    return input_error([&] { data::open_source("tsv:" + tsv); });
  };
  for (const char* label : {"99999999999999999999", "16777216"}) {
    msg = tsv_error(std::string("text\tlabel\nok\t3\nbad\t") + label + "\n");
    EXPECT_TRUE(has(msg, tsv) && has(msg, "line 3, column 'label'")) << msg;
  }
  EXPECT_EQ(tsv_error("text\tlabel\nok\t16777215\n"), "");
  msg = tsv_error("text\tsize\nbig\t1e39\n");
  EXPECT_TRUE(has(msg, tsv) && has(msg, "line 2, column 'size'") && has(msg, "out of float range")) << msg;
  EXPECT_EQ(tsv_error("text\tsize\nbig\t3e38\n"), "");
  // The h5 source's /label: negative, or beyond the bound (label + 1 overflowed for 2^63 - 1).
  for (int64_t bad : {int64_t(-1), INT64_MAX}) {
    const std::string file = dir / "h5src.h5";
    io::write_store(file, {}, [&](io::EmbeddingWriter& w) {
      w.create_float("v", 1);
      w.create_int64("label");
      float v[2] = {0.f, 1.f};
      int64_t l[2] = {0, bad};
      w.append_float("v", v, 2);
      w.append_int64("label", l, 2);
    });
    msg = input_error([&] { data::open_source("h5:" + file + ":v"); });
    EXPECT_TRUE(has(msg, file) && has(msg, "/label of row 1")) << msg;
  }
}

TEST(Sources, GaussianIsSeededPerItemAndTruncated) {
  data::SourceOptions o;
  o.seed = 5;
  auto s = data::open_source("gaussian:20000:4:1.5", o);
  auto all = s->get([] {
                std::vector<int64_t> v(20000);
                for (int i = 0; i < 20000; ++i) v[i] = i;
                return v;
              }())
                 .tensor;
  // The same item gives the same code in any batch.
  EXPECT_TRUE(torch::equal(s->get({17, 3}).tensor[0], all[17]));
  EXPECT_LE(all.abs().max().item<float>(), 1.5f);
  // Moments of N(0,1) truncated to [-1.5, 1.5]: mean 0, variance 1 - 2 t phi(t) / (2 Phi(t) - 1).
  double t = 1.5, phi = std::exp(-t * t / 2) / std::sqrt(2 * M_PI), Phi = 0.5 * std::erfc(-t / std::sqrt(2.0));
  double var = 1 - 2 * t * phi / (2 * Phi - 1);
  EXPECT_NEAR(all.mean().item<double>(), 0.0, 0.02);
  EXPECT_NEAR(all.var().item<double>(), var, 0.02);
  o.seed = 6;
  EXPECT_FALSE(torch::equal(data::open_source("gaussian:20000:4:1.5", o)->get({0}).tensor, all.narrow(0, 0, 1)));
  for (const char* bad : {"gaussian:10", "gaussian:x:4", "gaussian:10:0", "gaussian:10:4:-1", "nosuch:thing", "images:"})
    EXPECT_THROW(data::open_source(bad), UsageError) << bad;
}

// ------------------------------------------------------------------ experts
namespace {
// A TorchScript module built here: encode(x) = x @ W + b, forward(x) = 2 x, decode(z) = z @ W^T,
// caption(texts) = [[len(t)]], bad(x) = log(x) (NaN for negatives).
fs::path make_module(const fs::path& file, int64_t in = 3, int64_t out = 2) {
  torch::jit::Module m("Expert");
  torch::manual_seed(0);
  m.register_parameter("W", torch::randn({in, out}), false);
  m.register_parameter("b", torch::randn({out}), false);
  m.define(R"(
def encode(self, x):
    return torch.matmul(x.flatten(1), self.W) + self.b
def forward(self, x):
    return 2.0 * x
def decode(self, z):
    return torch.matmul(z, self.W.t())
def caption(self, texts: List[str]):
    out = torch.zeros(len(texts), 1)
    for i in range(len(texts)):
        out[i, 0] = float(len(texts[i]))
    return out
def bad(self, x):
    return torch.log(x)
)");
  m.save(file.string());
  return file;
}
data::Batch vectors(torch::Tensor t) {
  data::Batch b;
  b.kind = data::ItemKind::Vector;
  b.tensor = t;
  for (int64_t i = 0; i < t.size(0); ++i) b.index.push_back(i);
  return b;
}
}  // namespace

TEST(Experts, LabelIsOneHot) {
  auto b = vectors(torch::zeros({3, 1}));
  b.labels = torch::tensor({2, 0, 1}, torch::kLong);
  auto e = experts::make_expert("label:4");
  EXPECT_TRUE(torch::equal(e->encode(b), torch::eye(4).index_select(0, b.labels)));
  b.labels[1] = 4;
  try {
    e->encode(b);
    FAIL();
  } catch (const InputError& err) {
    EXPECT_NE(std::string(err.what()).find("item 1"), std::string::npos) << err.what();
  }
  EXPECT_THROW(experts::make_expert("label")->encode(vectors(torch::zeros({1, 1}))), InputError);  // no labels
  EXPECT_THROW(experts::make_expert("label:0"), UsageError);
}

TEST(Experts, TextHashIsDeterministicNormalisedAndSimilarityPreserving) {
  auto e = experts::make_expert("text-hash:128");
  data::Batch b;
  b.kind = data::ItemKind::Text;
  b.texts = {"a dark small shirt", "a dark large shirt", "bright white sneaker", "", "A Dark Small Shirt!"};
  b.index = {0, 1, 2, 3, 4};
  auto v = e->encode(b);
  EXPECT_EQ(v.sizes(), (std::vector<int64_t>{5, 128}));
  EXPECT_TRUE(torch::equal(v, experts::make_expert("text-hash:128")->encode(b)));
  EXPECT_NEAR(v[0].norm().item<double>(), 1.0, 1e-6);
  EXPECT_EQ(v[3].abs().sum().item<double>(), 0.0);                      // empty text
  EXPECT_TRUE(torch::allclose(v[0], v[4]));                              // case and punctuation
  EXPECT_GT(v[0].dot(v[1]).item<double>(), v[0].dot(v[2]).item<double>() + 0.3);  // shared words are close
  EXPECT_THROW(e->encode(vectors(torch::zeros({1, 2}))), InputError);
}

TEST(Experts, TorchScriptMethodsAndErrors) {
  TempDir dir("ts");
  auto file = make_module(dir / "m.pt");
  auto x = torch::randn({4, 3});
  auto module = torch::jit::load(file.string());
  auto W = module.attr("W").toTensor(), bias = module.attr("b").toTensor();
  // Default method: encode; explicit :forward; decode; a text method.
  EXPECT_TRUE(torch::allclose(experts::make_expert("ts:" + file.string())->encode(vectors(x)), x.matmul(W) + bias));
  EXPECT_TRUE(torch::equal(experts::make_expert("ts:" + file.string() + ":forward")->encode(vectors(x)), 2 * x));
  auto e = experts::make_expert("ts:" + file.string());
  EXPECT_TRUE(e->can_decode());
  auto z = torch::randn({2, 2});
  EXPECT_TRUE(torch::allclose(e->decode(z), z.matmul(W.t())));
  data::Batch t;
  t.kind = data::ItemKind::Text;
  t.texts = {"abc", "hello"};
  t.index = {0, 1};
  auto lengths = torch::tensor({3.f, 5.f}).view({2, 1});
  EXPECT_TRUE(torch::equal(experts::make_expert("ts:" + file.string() + ":caption")->encode(t), lengths));
  try {
    experts::make_expert("ts:" + file.string() + ":stage9");
    FAIL();
  } catch (const InputError& err) {
    EXPECT_NE(std::string(err.what()).find("no method 'stage9'"), std::string::npos) << err.what();
    EXPECT_NE(std::string(err.what()).find("encode"), std::string::npos) << err.what();
  }
  EXPECT_THROW(experts::make_expert("ts:" + (dir / "missing.pt")), IoError);
  std::ofstream(dir / "junk.pt") << "junk";
  EXPECT_THROW(experts::make_expert("ts:" + (dir / "junk.pt")), InputError);
  EXPECT_THROW(experts::make_expert("ts:" + file.string() + ":encode")->encode(vectors(torch::randn({2, 5}))), InputError);
  // The fingerprint holds the file's SHA-256, computed independently by sha256sum.
  std::string out = test::shell_output("sha256sum '" + file.string() + "' | cut -c1-64");
  EXPECT_EQ(e->fingerprint()["sha256"], out.substr(0, 64));
}

TEST(Experts, ChainsComposeInOrder) {
  TempDir dir("chain");
  auto gen = make_module(dir / "gen.pt", 3, 2);  // decode: 2 -> 3
  auto clf = make_module(dir / "clf.pt", 3, 2);  // encode: 3 -> 2
  auto z = torch::randn({5, 2});
  auto chain = experts::make_expert("ts:" + gen.string() + ":decode,ts:" + clf.string() + ":encode");
  auto manual = experts::make_expert("ts:" + clf.string())->encode(
      vectors(experts::make_expert("ts:" + gen.string() + ":decode")->encode(vectors(z))));
  EXPECT_TRUE(torch::equal(chain->encode(vectors(z)), manual));
  EXPECT_TRUE(torch::equal(experts::make_expert("identity,identity")->encode(vectors(z)), z));
  EXPECT_EQ(chain->fingerprint()["chain"].size(), 2u);
  EXPECT_THROW(experts::make_expert("identity,,identity"), UsageError);
  EXPECT_THROW(experts::make_expert("nosuch"), UsageError);
}

// ------------------------------------------------------------------ registries, --help, docs
namespace {
// The first column of the markdown table(s) whose header starts with `| first_header |`: code
// spans unwrapped, "\|" read as '|' ("| `a:b\|c` | ..." -> "a:b|c").
std::vector<std::string> table_first_column(const std::string& doc, const std::string& first_header) {
  auto cells = [](const std::string& line) {
    std::vector<std::string> out;
    std::string cur;
    auto trimmed = [](const std::string& s) {
      auto b = s.find_first_not_of(' '), e = s.find_last_not_of(' ');
      return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
    };
    for (size_t i = 1; i < line.size(); ++i) {  // line[0] is the leading '|'
      if (line[i] == '\\' && i + 1 < line.size() && line[i + 1] == '|') {
        cur += '|', ++i;
      } else if (line[i] == '|') {
        out.push_back(trimmed(cur)), cur.clear();
      } else {
        cur += line[i];
      }
    }
    return out;
  };
  enum { Outside, Wanted, Other } state = Outside;
  std::vector<std::string> rows;
  std::istringstream in(doc);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] != '|') {
      state = Outside;
      continue;
    }
    auto c = cells(line);
    if (state == Outside) {  // the header row
      state = !c.empty() && c[0] == first_header ? Wanted : Other;
      continue;
    }
    if (state == Other || c.empty() || c[0].find_first_not_of("-: ") == std::string::npos) continue;  // the |---| row
    std::string spec = c[0];
    if (spec.size() >= 2 && spec.front() == '`' && spec.back() == '`') spec = spec.substr(1, spec.size() - 2);
    rows.push_back(spec);
  }
  return rows;
}

std::vector<std::string> source_usage_list() {
  std::vector<std::string> out;
  for (const auto& s : data::source_schemes()) out.push_back(s.usage);
  return out;
}

// The expert kinds' usages and the chain's.
std::vector<std::string> expert_usage_list() {
  std::vector<std::string> out;
  for (const auto& k : experts::expert_registry().kinds()) out.push_back(k.usage);
  out.push_back(experts::kChainUsage);
  return out;
}

bool contains(const std::vector<std::string>& list, const std::string& item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

// The message of the UsageError that `f` throws ("" when it throws none).
template <class F>
std::string usage_error(F f) {
  try {
    f();
  } catch (const UsageError& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(Registries, EveryEntryIsNamedOnceAndItsUsageStartsWithItsName) {
  std::set<std::string> names;
  for (const auto& s : data::source_schemes()) {
    EXPECT_TRUE(names.insert(s.name).second) << "source scheme " << s.name << " twice";
    EXPECT_EQ(s.usage.rfind(s.name + ":", 0), 0u) << s.usage;
    EXPECT_FALSE(s.description.empty()) << s.name;
    EXPECT_TRUE(static_cast<bool>(s.open)) << s.name;
  }
  names.clear();
  for (const auto& k : experts::expert_registry().kinds()) {
    EXPECT_TRUE(names.insert(k.name).second) << "expert kind " << k.name << " twice";
    EXPECT_TRUE(k.usage == k.name || k.usage.rfind(k.name + ":", 0) == 0 || k.usage.rfind(k.name + "[:", 0) == 0) << k.usage;
    EXPECT_FALSE(k.description.empty()) << k.name;
    EXPECT_TRUE(static_cast<bool>(k.make)) << k.name;
  }
  // Every name there was before the registries: the engine's and the example's.
  for (const char* name : {"fashion-mnist", "images", "text", "tsv", "h5", "gaussian"})
    EXPECT_TRUE(std::any_of(data::source_schemes().begin(), data::source_schemes().end(),
                            [&](const data::SourceScheme& s) { return s.name == name; }))
        << name;
  for (const char* name : {"label", "text-hash", "identity", "ts", "caption", "caption-props", "sketch", "label-props", "columns",
                           "silhouette", "invert", "background", "label-domain"})
    EXPECT_NE(experts::expert_registry().find(name), nullptr) << name;
  EXPECT_EQ(experts::expert_registry().find("nosuch"), nullptr);
  // A name registered twice is a programming error.
  experts::ExpertRegistry r;
  r.add({"x", "x", "an expert", nullptr});
  EXPECT_THROW(r.add({"x", "x:N", "another", nullptr}), std::logic_error);
  // Kinds without an argument refuse one.
  for (const char* spec : {"identity:3", "caption:x", "caption-props:x", "sketch:x", "label-props:x", "invert:x", "background:x",
                           "label-domain:x"})
    EXPECT_NE(usage_error([&] { experts::make_expert(spec); }).find("takes no argument"), std::string::npos) << spec;
}

TEST(Experts, ColumnsTakesAPartOfEachVectorAndRefusesBadRanges) {
  data::Batch b;
  b.kind = data::ItemKind::Vector, b.index = {0, 1};
  b.tensor = torch::arange(24, torch::kFloat32).reshape({2, 12});
  auto part = experts::make_expert("columns:10:12")->encode(b);
  EXPECT_TRUE(torch::equal(part, torch::tensor({10.f, 11.f, 22.f, 23.f}).reshape({2, 2})));
  // Images are taken flattened.
  b.kind = data::ItemKind::Image, b.tensor = b.tensor.reshape({2, 1, 3, 4});
  EXPECT_TRUE(torch::equal(experts::make_expert("columns:0:1")->encode(b), torch::tensor({0.f, 12.f}).reshape({2, 1})));
  EXPECT_NE(input_error([&] { experts::make_expert("columns:10:13")->encode(b); }).find("12 columns, fewer than 13"), std::string::npos);
  for (const char* spec : {"columns", "columns:3", "columns:3:3", "columns:-1:2", "columns:a:2", "columns:1:2x", "columns:2:1"})
    EXPECT_NE(usage_error([&] { experts::make_expert(spec); }).find("columns:FIRST:END"), std::string::npos) << spec;
}

TEST(Registries, TheExtractHelpListsEveryUsage) {
  auto tool = cli::make_tool("net2net-extract");
  cli::GlobalOptions g;
  auto app = cli::build_app(*tool, g);
  EXPECT_NE(app->get_option("--data")->get_description().find(data::source_usages()), std::string::npos)
      << app->get_option("--data")->get_description();
  EXPECT_NE(app->get_option("--expert")->get_description().find(experts::expert_usages()), std::string::npos)
      << app->get_option("--expert")->get_description();
  const std::string help = app->help();
  for (const auto& s : data::source_schemes()) {
    EXPECT_NE(data::source_usages().find(s.usage), std::string::npos) << s.usage;
    EXPECT_NE(help.find(s.description), std::string::npos) << "--help lacks " << s.description;
  }
  for (const auto& k : experts::expert_registry().kinds()) {
    EXPECT_NE(experts::expert_usages().find(k.usage), std::string::npos) << k.usage;
    EXPECT_NE(help.find(k.description), std::string::npos) << "--help lacks " << k.description;
  }
  EXPECT_NE(experts::expert_usages().find(experts::kChainUsage), std::string::npos);
}

// As tests/test_config.cpp holds docs/configs.md to the config schema: the docs' tables name
// exactly the registered usages.
TEST(Registries, TheDocsTablesListExactlyTheRegisteredUsages) {
  struct Doc {
    std::string file, header;
    std::vector<std::string> usages;
  };
  for (const Doc& d : {Doc{"docs/experts.md", "spec", expert_usage_list()}, Doc{"docs/formats.md", "source", source_usage_list()}}) {
    SCOPED_TRACE(d.file);
    const auto rows = table_first_column(test::slurp(std::string(NET2NET_SOURCE_DIR) + "/" + d.file), d.header);
    ASSERT_FALSE(rows.empty()) << d.file << " has no table headed '| " << d.header << " |'";
    for (const auto& u : d.usages) EXPECT_TRUE(contains(rows, u)) << d.file << " lacks a row for `" << u << "`";
    for (const auto& r : rows) EXPECT_TRUE(contains(d.usages, r)) << d.file << " lists `" << r << "`, which is not registered";
    EXPECT_EQ(rows.size(), d.usages.size()) << d.file << ": a usage listed twice";
  }
}

TEST(Registries, UnknownNamesAndMissingArgumentsListTheUsages) {
  for (const std::string spec : {"nosuch:thing", "nosuch", ""}) {
    std::string msg = usage_error([&] { data::open_source(spec); });
    EXPECT_NE(msg.find("unknown source '" + spec + "'"), std::string::npos) << msg;
    for (const auto& u : source_usage_list()) EXPECT_NE(msg.find(u), std::string::npos) << msg << " lacks " << u;
  }
  for (const std::string spec : {"nosuch", "nosuch:3", "identity,nosuch"}) {
    std::string msg = usage_error([&] { experts::make_expert(spec); });
    EXPECT_NE(msg.find("unknown expert"), std::string::npos) << msg;
    for (const auto& u : expert_usage_list()) EXPECT_NE(msg.find(u), std::string::npos) << msg << " lacks " << u;
  }
  // A known scheme without its argument: the scheme's usage.
  for (const auto& s : data::source_schemes())
    for (const std::string spec : {s.name, s.name + ":"}) {
      std::string msg = usage_error([&] { data::open_source(spec); });
      EXPECT_NE(msg.find(s.usage), std::string::npos) << spec << ": " << msg;
    }
  EXPECT_NE(usage_error([] { experts::make_expert("ts"); }).find("ts:PATH[:METHOD]"), std::string::npos);
}

// The example's held-out prompts (configs/example/prompts_heldout.tsv): no word of theirs occurs in
// any caption the caption expert writes, and the in-vocabulary twin asks for the same things.
TEST(ExamplePrompts, HeldOutWordsNeverOccurInTrainingCaptionsAndTwinsAgree) {
  auto words = [](std::string text) {
    for (auto& ch : text) {
      ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      if (ch == '/' || ch == '-') ch = ' ';
    }
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string w; in >> w;) out.push_back(w);
    return out;
  };
  std::set<std::string> caption_words = {"a", "dark", "light", "small", "large"};
  for (const auto& name : data::fashion_mnist_classes())
    for (const auto& w : words(name)) caption_words.insert(w);
  const std::string dir = std::string(NET2NET_SOURCE_DIR) + "/configs/example/";
  auto heldout = data::open_source("tsv:" + dir + "prompts_heldout.tsv");
  auto twin = data::open_source("tsv:" + dir + "prompts_in_vocabulary.tsv");
  ASSERT_GE(heldout->size(), 60);
  ASSERT_EQ(heldout->size(), twin->size());
  std::vector<int64_t> all(heldout->size());
  std::iota(all.begin(), all.end(), 0);
  auto h = heldout->get(all), t = twin->get(all);
  EXPECT_TRUE(torch::equal(h.labels, t.labels));
  EXPECT_TRUE(torch::equal(h.tensor, t.tensor));
  std::set<int64_t> classes;
  for (int64_t i = 0; i < heldout->size(); ++i) {
    classes.insert(h.labels[i].item<int64_t>());
    for (const auto& w : words(h.texts[i])) EXPECT_EQ(caption_words.count(w), 0u) << "'" << h.texts[i] << "' uses '" << w << "'";
    for (const auto& w : words(t.texts[i])) EXPECT_EQ(caption_words.count(w), 1u) << "'" << t.texts[i] << "' uses '" << w << "'";
  }
  EXPECT_EQ(classes.size(), 10u);
}
