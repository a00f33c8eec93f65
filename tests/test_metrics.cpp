// FID / KID against closed forms, scipy's sqrtm route and brute force; the energy report
// against the paper's check values.
#include <H5Cpp.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <vector>

#include "net2net/core/error.h"
#include "net2net/data/h5_spec.h"
#include "net2net/data/source.h"
#include "net2net/experts/expert.h"
#include "net2net/io/embedding_store.h"
#include "net2net/metrics/accuracy.h"
#include "net2net/metrics/energy_report.h"
#include "net2net/metrics/fid.h"
#include "net2net/metrics/masks.h"
#include "net2net/train/energy.h"
#include "test_util.h"

using namespace net2net;
using namespace net2net::metrics;
namespace fs = std::filesystem;
using nlohmann::json;
using test::TempDir;
using torch::Tensor;

namespace {
Tensor correlated(int64_t n, int64_t d, uint64_t seed, double shift = 0.0) {
  auto g = at::detail::createCPUGenerator(seed);
  auto mix = at::randn({d, d}, g, torch::kFloat64) / std::sqrt(double(d));
  return at::randn({n, d}, g, torch::kFloat64).matmul(mix) + shift;
}
}  // namespace

// The python of an optional PyPI reference (scripts/run_tests.sh sets VAR from SETUP): skips the
// test without it, fails instead where REQUIRE is 1 (CI).
#define REFERENCE_PYTHON_OR_SKIP(python, var, require, setup)                                          \
  const char* python = std::getenv(var);                                                              \
  if (!python || !*python) {                                                                          \
    if (const char* r = std::getenv(require); r && std::string(r) == "1")                            \
      FAIL() << var << " is not set and " << require << "=1 (" << setup << ")";                      \
    GTEST_SKIP() << var << " not set (scripts/run_tests.sh sets it from " << setup << ")";            \
  }

TEST(Fid, ASetWithItselfIsZero) {
  auto f = correlated(3000, 64, 1);
  auto s = compute_stats(f, "identity");
  // Zero up to the rounding of the matrix square root, which scales with the trace (~64 here).
  EXPECT_LT(std::fabs(frechet_distance(s, s).fid), 1e-10 * s.sigma.trace().item<double>());
}

TEST(Fid, DiagonalGaussiansMatchTheClosedForm) {
  auto g = at::detail::createCPUGenerator(3);
  const int64_t d = 50;
  auto mu1 = at::randn({d}, g, torch::kFloat64), mu2 = at::randn({d}, g, torch::kFloat64);
  auto v1 = at::rand({d}, g, torch::kFloat64) + 0.1, v2 = at::rand({d}, g, torch::kFloat64) * 3 + 0.01;
  FeatureStats a{mu1, torch::diag(v1), 100000, "x"}, b{mu2, torch::diag(v2), 100000, "x"};
  double closed = (mu1 - mu2).pow(2).sum().item<double>() + (v1 + v2 - 2 * (v1 * v2).sqrt()).sum().item<double>();
  auto r = frechet_distance(a, b);
  EXPECT_NEAR(r.fid, closed, 1e-9 * closed);
  EXPECT_EQ(r.eps, 0.0);
}

TEST(Fid, AgreesWithTheScipySqrtmRoute) {
  NET2NET_REQUIRE_PYTHON("scipy");
  TempDir dir("fid_scipy");
  auto a = correlated(1000, 64, 5), b = correlated(1200, 64, 6, 0.3) * 1.2;
  io::write_store(dir / "f.h5", {}, [&](io::EmbeddingWriter& w) {
    for (auto [name, t] : {std::pair{"a", a}, std::pair{"b", b}}) {
      auto f = t.to(torch::kFloat32).contiguous();
      w.create_float(name, 64);
      w.append_float(name, f.data_ptr<float>(), f.size(0));
    }
  });
  // Both from the float32 values stored in the file.
  io::EmbeddingReader r(dir / "f.h5", false);
  auto fa = torch::from_blob(r.read_rows("a", 0, 1000).data(), {1000, 64}).clone();
  auto fb = torch::from_blob(r.read_rows("b", 0, 1200).data(), {1200, 64}).clone();
  double ours = frechet_distance(compute_stats(fa, "identity"), compute_stats(fb, "identity")).fid;
  std::string out = test::shell_output("cd '" + std::string(NET2NET_SOURCE_DIR) + "' && /usr/bin/python3 tests/python/fid_reference.py '" +
                                       (dir / "f.h5") + "' a b");
  double theirs = std::stod(out);
  EXPECT_NEAR(ours, theirs, 1e-6 * std::fabs(theirs)) << ours << " vs scipy " << theirs;
}

// The packages users cite (issue 19): pytorch-fid's calculate_frechet_distance and clean-fid's
// frechet_distance on the same features agree with ours to 1e-6 relative. Their python comes from
// scripts/setup_fid_refs.sh (run_tests.sh sets NET2NET_FID_PYTHON; CI requires it).
TEST(Fid, AgreesWithPytorchFidAndCleanFid) {
  REFERENCE_PYTHON_OR_SKIP(python, "NET2NET_FID_PYTHON", "NET2NET_REQUIRE_FID_REFS", "scripts/setup_fid_refs.sh");
  TempDir dir("fid_packages");
  for (int64_t d : {64, 256}) {
    auto a = correlated(1500, d, 11), b = correlated(1300, d, 12, 0.4) * 1.1 + 0.05;
    const std::string file = dir / ("f" + std::to_string(d) + ".h5");
    io::write_store(file, {}, [&](io::EmbeddingWriter& w) {
      for (auto [name, t] : {std::pair{"a", a}, std::pair{"b", b}}) {
        auto f = t.to(torch::kFloat32).contiguous();
        w.create_float(name, d);
        w.append_float(name, f.data_ptr<float>(), f.size(0));
      }
    });
    io::EmbeddingReader r(file, false);
    auto fa = torch::from_blob(r.read_rows("a", 0, 1500).data(), {1500, d}).clone();
    auto fb = torch::from_blob(r.read_rows("b", 0, 1300).data(), {1300, d}).clone();
    const double ours = frechet_distance(compute_stats(fa, "identity"), compute_stats(fb, "identity")).fid;
    const std::string out = test::shell_output("cd '" + std::string(NET2NET_SOURCE_DIR) + "' && '" + python +
                                               "' tests/python/fid_reference.py '" + file + "' a b --packages");
    const json theirs = json::parse(out, nullptr, false);
    ASSERT_TRUE(theirs.is_object()) << out;
    for (const char* package : {"pytorch_fid", "clean_fid"}) {
      const double v = theirs[package].get<double>();
      EXPECT_NEAR(ours, v, 1e-6 * std::fabs(v)) << "D " << d << ": ours " << ours << " vs " << package << " " << v;
    }
  }
}

// The panelled covariance (D >= 512: 256-row panels, a remainder panel at 600) against the plain
// product, and the trace term by the Cholesky route and by its fallback (a singular S1: a constant
// feature) against the eigenvalues of S1 S2 from a general eigensolver.
TEST(Fid, CovariancePanelsAndBothTraceRoutesAgreeWithDirectComputations) {
  auto x = correlated(900, 600, 21);
  auto s = compute_stats(x, "x");
  auto c = x - x.mean(0);
  auto plain = c.t().matmul(c) / 899.0;
  EXPECT_LT((s.sigma - plain).abs().max().item<double>(), 1e-12 * plain.abs().max().item<double>());
  auto brute = [](const FeatureStats& a, const FeatureStats& b) {
    auto w = at::linalg_eigvals(a.sigma.matmul(b.sigma));  // complex; real and >= 0 up to rounding
    double tr = at::real(w).clamp_min(0).sqrt().sum().item<double>();
    auto diff = a.mu - b.mu;
    return diff.dot(diff).item<double>() + a.sigma.trace().item<double>() + b.sigma.trace().item<double>() - 2 * tr;
  };
  auto a = compute_stats(correlated(700, 40, 22), "x"), b = compute_stats(correlated(800, 40, 23, 0.2) * 1.3, "x");
  EXPECT_NEAR(frechet_distance(a, b).fid, brute(a, b), 1e-9 * brute(a, b));
  auto singular = correlated(700, 40, 24);
  singular.select(1, 7).fill_(3.0);  // S1 is PSD but singular: Cholesky fails, the eigh route takes over
  auto s1 = compute_stats(singular, "x");
  ASSERT_NE(std::get<1>(at::linalg_cholesky_ex(s1.sigma)).item<int>(), 0);
  EXPECT_NEAR(frechet_distance(s1, b).fid, brute(s1, b), 1e-8 * brute(s1, b));
}

TEST(Fid, FewerSamplesThanDimensionsDoesNotCrash) {
  auto a = correlated(10, 64, 7), b = correlated(12, 64, 8);
  auto r = frechet_distance(compute_stats(a, "x"), compute_stats(b, "x"));
  EXPECT_TRUE(std::isfinite(r.fid));
  EXPECT_GT(r.eps, 0.0);
  EXPECT_GT(r.fid, 0.0);
  EXPECT_THROW(compute_stats(a.narrow(0, 0, 1), "x"), InputError);
}

TEST(Fid, SavedStatsRoundTrip) {
  TempDir dir("fid_stats");
  auto a = correlated(500, 32, 9), b = correlated(400, 32, 10, 0.5);
  auto sa = compute_stats(a, "ts:feat.pt"), sb = compute_stats(b, "ts:feat.pt");
  save_stats(dir / "a.h5", sa);
  auto la = load_stats(dir / "a.h5");
  EXPECT_TRUE(torch::equal(la.mu, sa.mu));
  EXPECT_TRUE(torch::equal(la.sigma, sa.sigma));
  EXPECT_EQ(la.n, 500);
  EXPECT_EQ(la.features, "ts:feat.pt");
  EXPECT_DOUBLE_EQ(frechet_distance(la, sb).fid, frechet_distance(sa, sb).fid);
  EXPECT_THROW(load_stats(dir / "missing.h5"), IoError);
}

// Statistics files written with the HDF5 API (what save_stats never writes): each is refused with
// an InputError naming the file (and the attribute), and what is read can be printed as JSON.
TEST(Fid, MalformedStatisticsFilesAreRefusedNamingTheFile) {
  TempDir dir("fid_malformed");
  H5::Exception::dontPrint();
  const std::string file = dir / "s.h5";
  // /mu [d] = 0 and /sigma [d, d] = I (left unwritten and chunked when d is huge), then `more`.
  auto write_stats = [&](hsize_t d, const std::function<void(H5::H5File&)>& more) {
    H5::H5File f(file, H5F_ACC_TRUNC);
    hsize_t dims[2] = {d, d};
    H5::DSetCreatPropList plist;
    if (d > 64) {
      hsize_t chunk[2] = {1, 1024};
      plist.setChunk(2, chunk);
      H5::DSetCreatPropList mu_plist;
      mu_plist.setChunk(1, chunk + 1);
      f.createDataSet("mu", H5::PredType::IEEE_F64LE, H5::DataSpace(1, dims), mu_plist);
      f.createDataSet("sigma", H5::PredType::IEEE_F64LE, H5::DataSpace(2, dims), plist);
    } else {
      std::vector<double> mu(d, 0.0), sigma(d * d, 0.0);
      for (hsize_t i = 0; i < d; ++i) sigma[i * d + i] = 1.0;
      auto mu_set = f.createDataSet("mu", H5::PredType::IEEE_F64LE, H5::DataSpace(1, dims));
      auto sigma_set = f.createDataSet("sigma", H5::PredType::IEEE_F64LE, H5::DataSpace(2, dims));
      if (d > 0) {
        mu_set.write(mu.data(), H5::PredType::NATIVE_DOUBLE);
        sigma_set.write(sigma.data(), H5::PredType::NATIVE_DOUBLE);
      }
    }
    if (more) more(f);
  };
  auto refusal = [&]() -> std::string {
    try {
      load_stats(file);
    } catch (const InputError& e) {
      return e.what();
    }
    return "";
  };
  auto has = [](const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; };
  // "n" of shape [3]: read into one int64 it overran the stack.
  write_stats(4, [](H5::H5File& f) {
    hsize_t three = 3;
    int64_t n[3] = {5, 6, 7};
    f.createAttribute("n", H5::PredType::STD_I64LE, H5::DataSpace(1, &three)).write(H5::PredType::NATIVE_INT64, n);
  });
  std::string msg = refusal();
  EXPECT_TRUE(has(msg, file) && has(msg, "attribute 'n'")) << msg;
  // "n" as a float.
  write_stats(4, [](H5::H5File& f) {
    double n = 5.5;
    f.createAttribute("n", H5::PredType::IEEE_F64LE, H5::DataSpace(H5S_SCALAR)).write(H5::PredType::NATIVE_DOUBLE, &n);
  });
  msg = refusal();
  EXPECT_TRUE(has(msg, file) && has(msg, "attribute 'n'")) << msg;
  // "features" not a string.
  write_stats(4, [](H5::H5File& f) {
    int64_t v = 1;
    f.createAttribute("features", H5::PredType::STD_I64LE, H5::DataSpace(H5S_SCALAR)).write(H5::PredType::NATIVE_INT64, &v);
  });
  msg = refusal();
  EXPECT_TRUE(has(msg, file) && has(msg, "attribute 'features'")) << msg;
  // 2^20 dimensions: [D, D] was allocated from the file's word (8 TiB: c10::Error, exit 1); and 0.
  for (hsize_t d : {hsize_t(1) << 20, hsize_t(0)}) {
    write_stats(d, nullptr);
    msg = refusal();
    EXPECT_TRUE(has(msg, file) && has(msg, "feature dimensions")) << d << ": " << msg;
  }
  // "features" that is not UTF-8 is read with U+FFFD in place of the bad bytes: eval prints it as JSON.
  write_stats(4, [](H5::H5File& f) {
    H5::StrType str(H5::PredType::C_S1, H5T_VARIABLE);
    str.setCset(H5T_CSET_UTF8);
    f.createAttribute("features", str, H5::DataSpace(H5S_SCALAR)).write(str, std::string("ts:\xff\xfe.pt"));
  });
  FeatureStats s;
  ASSERT_NO_THROW(s = load_stats(file));
  EXPECT_EQ(s.features, "ts:\xef\xbf\xbd\xef\xbf\xbd.pt");
  EXPECT_NO_THROW(json({{"features", s.features}}).dump());
}

TEST(Kid, UnbiasedEstimateMatchesBruteForceAndSeparatesDistributions) {
  auto a = correlated(40, 8, 11), b = correlated(40, 8, 12, 0.4);
  // One subset of all rows: a permutation-invariant statistic, computed here by brute force.
  auto k = [](const Tensor& x, const Tensor& y) { return std::pow(x.dot(y).item<double>() / 8.0 + 1.0, 3); };
  double sxx = 0, syy = 0, sxy = 0;
  for (int i = 0; i < 40; ++i)
    for (int j = 0; j < 40; ++j) {
      if (i != j) sxx += k(a[i], a[j]), syy += k(b[i], b[j]);
      sxy += k(a[i], b[j]);
    }
  double brute = (sxx + syy) / (40.0 * 39.0) - 2.0 * sxy / (40.0 * 40.0);
  auto r = kernel_inception_distance(a, b, 1, 40);
  EXPECT_NEAR(r.mean, brute, 1e-9 * std::fabs(brute) + 1e-12);
  auto pool = correlated(4000, 8, 13);  // two halves of one sample: the same distribution
  auto same = kernel_inception_distance(pool.narrow(0, 0, 2000), pool.narrow(0, 2000, 2000), 20, 500);
  auto shifted = kernel_inception_distance(pool.narrow(0, 0, 2000), pool.narrow(0, 2000, 2000) + 1.0, 20, 500);
  EXPECT_GT(shifted.mean, 10 * std::fabs(same.mean) + 0.01);
}

// ------------------------------------------------------------------ energy report
TEST(EnergyReport, ThePapersCheckValues) {
  EnergyOptions o;
  auto profiles = load_power_profiles({});
  auto titan = nominal_cost("x", "titanx", 1.0, profiles["titanx"]["watts"], o);
  EXPECT_NEAR(titan.kwh, 0.6, 1e-12);
  EXPECT_NEAR(titan.cost, 0.1296, 1e-12);
  EXPECT_NEAR(titan.co2_kg, 0.1776, 1e-12);
  auto dgx = nominal_cost("x", "dgx1", 1.0, profiles["dgx1"]["watts"], o);
  EXPECT_NEAR(dgx.kwh, 3.5, 1e-12);
  EXPECT_NEAR(dgx.cost, 0.756, 1e-12);
  EXPECT_NEAR(dgx.co2_kg, 1.036, 1e-12);
  o.pue = 1.5;
  EXPECT_NEAR(nominal_cost("x", "dgx1", 2.0, 3500, o).kwh, 10.5, 1e-12);
}

TEST(EnergyReport, RunWithoutReadableCountersReportsNominallyAndSaysSo) {
  TempDir dir("energy_run");
  train::EnergyMeter meter((dir / "no-powercap"));
  json record = meter.record();
  record["wall_seconds"] = 7200.0;
  std::ofstream(dir / "energy.json") << record.dump();
  std::ofstream(dir / "config.json") << R"({"name": "label2ae"})";
  EnergyOptions o;
  o.runs = {dir.str()};
  try {
    energy_report(o);
    FAIL() << "no measured energy and no profile must be an error";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("--power-profile"), std::string::npos) << e.what();
  }
  o.profile = "titanx";
  auto rows = energy_report(o);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].model, "label2ae");
  EXPECT_NEAR(rows[0].kwh, 1.2, 1e-9);
  EXPECT_EQ(rows[0].energy_source, "nominal");
  EXPECT_NE(rows[0].note.find("no RAPL"), std::string::npos) << rows[0].note;
  auto md = to_markdown(rows, o);
  EXPECT_NE(md.find("| label2ae |"), std::string::npos) << md;
  EXPECT_NE(md.find("1.200 kWh"), std::string::npos) << md;
  EXPECT_NE(md.find("0.2592 EUR"), std::string::npos) << md;
  auto csv = to_codecarbon_csv(rows, o);
  EXPECT_EQ(csv.rfind("timestamp,project_name,run_id,duration,emissions,emissions_rate,cpu_power,gpu_power,ram_power,"
                      "cpu_energy,gpu_energy,ram_energy,energy_consumed,",
                      0),
            0u);
  EXPECT_NE(csv.find(",7200.000,"), std::string::npos) << csv;
}

TEST(EnergyReport, MeasuredEnergyAndReferenceEntries) {
  TempDir dir("energy_measured");
  json record = {{"wall_seconds", 3600.0}, {"cpu_seconds", 7000.0}, {"cpu_joules", 7.2e6}, {"gpu_joules", 3.6e6},
                 {"hardware", {{"cpu_model", "Test CPU"}, {"cpus", 8}, {"gpus", {"Test GPU"}}}},
                 {"cpu_energy", {{"measured", true}}}, {"gpu_energy", {{"measured", true}}}};
  std::ofstream(dir / "energy.json") << record.dump();
  EnergyOptions o;
  o.runs = {dir.str()};
  o.pue = 1.5;
  o.references = {"all"};
  auto rows = energy_report(o);
  ASSERT_GE(rows.size(), 2u);
  EXPECT_NEAR(rows[0].kwh, 3.0 * 1.5, 1e-9);  // (2 + 1) kWh measured, times PUE
  EXPECT_NE(rows[0].energy_source.find("RAPL + NVML"), std::string::npos);
  EXPECT_EQ(rows[1].energy_source, "reference");
  EXPECT_FALSE(rows[1].note.empty());  // every reference names its source
  o.references = {"no such model"};
  EXPECT_THROW(energy_report(o), UsageError);
  o.references.clear();
  o.profile = "nonexistent";
  EXPECT_THROW(energy_report(o), UsageError);
  EnergyOptions plain;
  plain.runs = {dir.str()};
  auto j = to_json(energy_report(plain), plain);
  EXPECT_NEAR(j["rows"][0]["energy_kwh"].get<double>(), 3.0, 1e-9);
}

// CodeCarbon's own reader (scripts/setup_codecarbon.sh; tests/python/codecarbon_check.py): the CSV
// has exactly its columns, every row becomes its EmissionsData with our kWh, and its FileOutput
// appends to the file instead of backing it up as "the CSV format has changed".
TEST(EnergyReport, CsvLoadsWithCodeCarbonsOwnCode) {
  REFERENCE_PYTHON_OR_SKIP(python, "NET2NET_CODECARBON_PYTHON", "NET2NET_REQUIRE_CODECARBON",
                           "scripts/setup_codecarbon.sh");
  TempDir dir("energy_codecarbon");
  json record = {{"wall_seconds", 3600.0}, {"cpu_seconds", 7000.0}, {"cpu_joules", 7.2e6}, {"gpu_joules", 3.6e6},
                 {"hardware", {{"cpu_model", "Test CPU, \"quoted\""}, {"cpus", 8}, {"gpus", {"Test GPU"}}}},
                 {"cpu_energy", {{"measured", true}}}, {"gpu_energy", {{"measured", true}}}};
  const std::string run = dir / "run";
  fs::create_directories(run);
  std::ofstream(run + "/energy.json") << record.dump();
  EnergyOptions o;
  o.runs = {run};
  o.references = {"all"};
  const auto rows = energy_report(o);
  const std::string csv = dir / "emissions.csv";
  std::ofstream(csv) << to_codecarbon_csv(rows, o);
  const std::string out = test::shell_output("cd '" + std::string(NET2NET_SOURCE_DIR) + "' && '" + python +
                                             "' tests/python/codecarbon_check.py '" + csv + "'");
  const json r = json::parse(out, nullptr, false);
  ASSERT_TRUE(r.is_object()) << out;
  EXPECT_TRUE(r["columns_match"].get<bool>()) << "missing " << r["missing"].dump() << ", extra " << r["extra"].dump();
  EXPECT_EQ(r["rows"].get<size_t>(), rows.size());
  EXPECT_NEAR(r["energy_consumed"].get<double>(), 3.0, 1e-9);  // (2 + 1) kWh measured
  EXPECT_TRUE(r["appended"].get<bool>()) << out;
  EXPECT_EQ(r["rows_after"].get<size_t>(), rows.size() + 1);
}

TEST(Accuracy, ClassesAndRequestedPropertiesAgainstAHandCount) {
  const std::vector<int64_t> predicted = {0, 1, 2, 1, 0, 2};
  const std::vector<int64_t> expected = {0, 1, 1, 1, 2, 2};  // right: items 0, 1, 3, 5
  // Two property codes per item; a requested 0 means "not requested". A 7th row of codes is
  // beyond the items and ignored.
  PropertyCodes codes{{1, -1, /**/ 0, 1, /**/ 1, 1, /**/ -1, 0, /**/ 1, 1, /**/ -1, 1, /**/ 5, 5}, 7, 2};
  PropertyCodes requested{{1, 0,    // 1 asked, 1 matched: counts (class right)
                           -1, 1,   // 2 asked, 1 matched: fails
                           0, 0,    // none asked, but the class is wrong
                           0, 0,    // none asked: counts (class right)
                           1, 1,    // 2 asked, 2 matched, but the class is wrong
                           1, 0},   // 1 asked, 0 matched: fails
                          6, 2};
  auto r = classification_accuracy(predicted, expected, codes, requested);
  EXPECT_EQ(r.n, 6);
  EXPECT_EQ(r.correct, 4);
  EXPECT_DOUBLE_EQ(r.accuracy, 4.0 / 6);
  ASSERT_EQ(r.per_class.size(), 3u);
  EXPECT_EQ(r.per_class.at(0), std::make_pair(int64_t(1), int64_t(1)));
  EXPECT_EQ(r.per_class.at(1), std::make_pair(int64_t(2), int64_t(3)));
  EXPECT_EQ(r.per_class.at(2), std::make_pair(int64_t(1), int64_t(2)));
  EXPECT_TRUE(r.with_properties);
  EXPECT_EQ(r.correct_with_properties, 2);
  EXPECT_DOUBLE_EQ(r.accuracy_with_properties, 2.0 / 6);
  EXPECT_EQ(r.properties_requested, 6);
  EXPECT_EQ(r.properties_matched, 4);
  EXPECT_DOUBLE_EQ(r.property_agreement, 4.0 / 6);

  json j = to_json(r, "identity");
  EXPECT_DOUBLE_EQ(j["accuracy"].get<double>(), 4.0 / 6);
  EXPECT_EQ(j["n"].get<int64_t>(), 6);
  EXPECT_EQ(j["classifier"], "identity");
  EXPECT_DOUBLE_EQ(j["per_class"]["1"].get<double>(), 2.0 / 3);
  EXPECT_DOUBLE_EQ(j["accuracy_with_properties"].get<double>(), 2.0 / 6);
  EXPECT_DOUBLE_EQ(j["property_agreement"].get<double>(), 4.0 / 6);
  EXPECT_EQ(j["properties_requested"].get<int64_t>(), 6);
  // Property by property: the first asked of items 0, 1, 4, 5 and met by 0 and 4; the second
  // asked of items 1 and 4 and met by both.
  EXPECT_EQ(r.requested_by_column, (std::vector<int64_t>{4, 2}));
  EXPECT_EQ(r.matched_by_column, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(j["property_agreement_by_column"], json::parse("[0.5, 1.0]"));
  EXPECT_EQ(j["properties_requested_by_column"], json::parse("[4, 2]"));

  // Without property codes: no property keys; nothing requested: agreement 1.
  auto plain = classification_accuracy(predicted, expected);
  EXPECT_FALSE(plain.with_properties);
  EXPECT_DOUBLE_EQ(plain.accuracy, 4.0 / 6);
  EXPECT_FALSE(to_json(plain, "identity").contains("property_agreement"));
  PropertyCodes none{std::vector<float>(12, 0.0f), 6, 2};
  auto unasked = classification_accuracy(predicted, expected, codes, none);
  EXPECT_EQ(unasked.properties_requested, 0);
  EXPECT_DOUBLE_EQ(unasked.property_agreement, 1.0);
  EXPECT_EQ(to_json(unasked, "identity")["property_agreement_by_column"], json::parse("[null, null]"));
  EXPECT_DOUBLE_EQ(unasked.accuracy_with_properties, 4.0 / 6);

  EXPECT_THROW(classification_accuracy({0, 1}, expected), InputError);
  PropertyCodes narrow{std::vector<float>(6, 1.0f), 6, 1};
  EXPECT_THROW(classification_accuracy(predicted, expected, codes, narrow), InputError);
}

TEST(Accuracy, PredictionsComeInSourceOrderWhateverTheBatchSize) {
  auto source = data::open_source("gaussian:7:4");
  auto identity = experts::make_expert("identity");
  auto all = source->get({0, 1, 2, 3, 4, 5, 6}).tensor.argmax(1);
  for (int64_t batch : {1, 3, 7, 100}) {
    std::vector<int64_t> starts;
    encode_in_batches(*source, *identity, batch, [&](const data::Batch& b, const Tensor& out) {
      starts.push_back(b.index.front());
      EXPECT_EQ(out.size(0), b.size());
    });
    EXPECT_EQ(int64_t(starts.size()), (7 + batch - 1) / batch);
    auto predicted = predict_classes(*source, *identity, batch);
    ASSERT_EQ(predicted.size(), 7u);
    for (int64_t i = 0; i < 7; ++i) EXPECT_EQ(predicted[i], all[i].item<int64_t>()) << "batch " << batch;
  }
  EXPECT_THROW(predict_classes(*source, *identity, 0), UsageError);
}

TEST(MaskAgreement, IouAndPixelAgreementMatchTensorArithmeticWithKSamplesPerTarget) {
  torch::manual_seed(6);
  const int64_t targets = 5, k = 3, cols = 49;
  auto target = (torch::rand({targets, cols}) > 0.6).to(torch::kFloat32);
  // Samples: their target with some cells flipped (soft values around the threshold).
  auto pred = target.repeat_interleave(k, 0);
  pred = torch::where(torch::rand({targets * k, cols}) < 0.2, 1 - pred, pred) * 0.8 + 0.1;
  pred[4].fill_(0.0f), target[1].fill_(0.0f);  // target 1 empty: sample 4 (empty) scores 1, 3 and 5 score 0
  std::vector<float> p(pred.data_ptr<float>(), pred.data_ptr<float>() + pred.numel()),
      t(target.data_ptr<float>(), target.data_ptr<float>() + target.numel());
  auto r = metrics::mask_agreement(p, targets * k, t, targets, cols, 0.5);
  // Independent: boolean tensors, each sample against its target (repeat_interleave).
  auto pb = pred > 0.5, tb = target.repeat_interleave(k, 0) > 0.5;
  auto inter = (pb & tb).sum(1).to(torch::kFloat64), uni = (pb | tb).sum(1).to(torch::kFloat64);
  auto iou = torch::where(uni > 0, inter / uni.clamp_min(1), torch::ones_like(uni));
  EXPECT_NEAR(r.iou, iou.mean().item<double>(), 1e-12);
  EXPECT_NEAR(r.pixel_agreement, (pb == tb).to(torch::kFloat64).mean().item<double>(), 1e-12);
  EXPECT_EQ(r.both_empty, 1);
  EXPECT_EQ(r.per_target, k);
  EXPECT_EQ(iou[4].item<double>(), 1.0);
  EXPECT_EQ(iou[3].item<double>(), 0.0);
  // A mask against itself: 1; against its complement: 0.
  EXPECT_EQ(metrics::mask_agreement(t, targets, t, targets, cols, 0.5).iou, 1.0);
  std::vector<float> complement(t.size());
  for (size_t i = 0; i < t.size(); ++i) complement[i] = 1 - t[i];
  auto c = metrics::mask_agreement(complement, targets, t, targets, cols, 0.5);
  EXPECT_EQ(c.iou, 0.0);
  EXPECT_EQ(c.pixel_agreement, 0.0);
  // Rows that are not a whole number per target, and empty sides, are refused.
  EXPECT_THROW(metrics::mask_agreement(p, 7, t, targets, cols, 0.5), InputError);
  EXPECT_THROW(metrics::mask_agreement({}, 0, t, targets, cols, 0.5), InputError);
}

TEST(H5Spec, TheDatasetFollowsTheLastColon) {
  auto s = data::parse_h5_spec("h5:C:/runs/a:b.h5:label", "--labels");
  EXPECT_EQ(s.file, "C:/runs/a:b.h5");
  EXPECT_EQ(s.dataset, "label");
  EXPECT_TRUE(data::is_h5_spec("h5:f.h5:x"));
  EXPECT_FALSE(data::is_h5_spec("images:dir"));
  for (const char* bad : {"f.h5:label", "h5:", "h5:f.h5", "h5::label", "h5:f.h5:"})
    EXPECT_THROW(data::parse_h5_spec(bad, "--labels"), UsageError) << bad;
  try {
    data::parse_h5_spec("images:x", "--props");
    FAIL();
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("--props 'images:x' must be h5:FILE:DATASET"), std::string::npos) << e.what();
  }
}
