// The h5:FILE:DATASET spec of one HDF5 dataset (labels, property codes, sources): one parser, so
// that every option that takes such a spec splits it the same way. The dataset is what follows
// the last ':' (FILE may itself contain ':'), as open_source() splits it. No torch here.
#pragma once
#include <string>

namespace net2net::data {

struct H5Spec {
  std::string file;
  std::string dataset;
};

// True when `spec` starts with "h5:".
bool is_h5_spec(const std::string& spec);

// Splits "h5:FILE:DATASET". UsageError when the spec is not of that form (no "h5:" prefix, no
// ':' before the dataset, an empty FILE or DATASET); the message starts with `what` (an option
// name such as "--labels"; empty: the spec itself) and quotes the spec.
H5Spec parse_h5_spec(const std::string& spec, const std::string& what = "");

}  // namespace net2net::data
