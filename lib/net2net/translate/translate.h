// net2net-translate's engine. Conditions z_phi come from a cache, labels, texts, or raw inputs
// through the condition expert; for each, K samples z_theta = T^-1(v | z_phi), v ~ N(0, T^2 I)
// (seeded), or, in transfer mode, v = T(z_theta(x) | z_phi(x)) of exemplars x carried over to
// each target condition (the reference's "shift"). Edit strength (transfer with --alpha): the
// condition moves linearly from the exemplar's own toward the target, c = (1 - a) c_x + a c_t,
// for each a (0: the exemplar itself, 1: the plain transfer), as the original demo's slider.
// Attribute editing (transfer with --edit COL=VALUE): each exemplar's target is its own condition
// with those columns set. Output: HDF5 /z [rows, D], /cond_index [rows] (plus, in transfer mode,
// /exemplar_index and /cond, the condition each row was rendered under; /alpha, /label, and
// /image when decoded), and optionally a PNG grid.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "net2net/core/defaults.h"

namespace net2net::translate {

struct TranslateRequest {
  std::string checkpoint;
  // Exactly one way to give the conditions:
  std::string cond;                  // h5:FILE:DATASET
  std::string data, cond_expert;     // a SOURCE through an expert (default: the model's condition expert)
  std::vector<int64_t> labels;       // one-hot labels
  std::vector<std::string> texts;    // through the model's text condition expert
  int64_t limit = 0;                 // --cond / --data: only the first N conditions (0: all)
  int64_t samples = 1;
  double temperature = 1.0;
  uint64_t seed = kDefaultSeed;
  std::string out;                   // .h5
  std::string decoder;               // default: the model's target expert, when it can decode
  std::string png;
  std::string mode = "sample";       // sample | transfer
  std::string exemplar;              // transfer: a cache (FILE.h5) with the model's condition and target datasets
  int64_t exemplar_limit = 8;        // transfer: the first N exemplars
  std::vector<double> alphas;        // transfer: edit strengths (empty: 1 alone, no /alpha dataset)
  // Transfer: target conditions made from each exemplar's own, "COL=VALUE[,COL=VALUE...]" each
  // (attribute editing: the exemplar with one attribute changed, the rest of its condition kept);
  // in place of --labels / --text / --cond / --data.
  std::vector<std::string> edits;
  bool png_inputs = false;           // --data of images: the grid's first column is each condition's input item
  int64_t max_rows_in_png = 40;      // conditions (rows) drawn in the grid
  int64_t max_cols_in_png = 64;      // samples (columns) of each condition drawn in the grid
  int64_t batch_size = 1024;
  std::string device = "cpu";
  bool force = false;
};

nlohmann::json run_translate(const TranslateRequest& request);

}  // namespace net2net::translate
