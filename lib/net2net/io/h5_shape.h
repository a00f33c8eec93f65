// Shape look-ups in HDF5 files without reading the data (used to take model dimensions from
// an embedding cache). The full embedding store comes with net2net-extract.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace net2net::io {

// Dimensions of dataset `name` in `file`. IoError when the file cannot be opened,
// InputError naming the dataset when it is missing.
std::vector<int64_t> h5_dataset_shape(const std::string& file, const std::string& name);

}  // namespace net2net::io
