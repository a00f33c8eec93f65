#include "net2net/data/h5_spec.h"

#include "net2net/core/error.h"

namespace net2net::data {

bool is_h5_spec(const std::string& spec) { return spec.rfind("h5:", 0) == 0; }

H5Spec parse_h5_spec(const std::string& spec, const std::string& what) {
  const std::string subject = what.empty() ? "'" + spec + "'" : what + " '" + spec + "'";
  if (!is_h5_spec(spec)) throw UsageError(subject + " must be h5:FILE:DATASET");
  const std::string rest = spec.substr(3);
  const auto last = rest.rfind(':');
  if (last == std::string::npos || last == 0 || last + 1 == rest.size())
    throw UsageError(subject + " must be h5:FILE:DATASET (a file name, then ':' and the dataset)");
  return {rest.substr(0, last), rest.substr(last + 1)};
}

}  // namespace net2net::data
