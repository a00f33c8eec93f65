#include "net2net/io/h5_shape.h"

#include <H5Cpp.h>

#include <filesystem>

#include "net2net/core/error.h"

namespace net2net::io {

std::vector<int64_t> h5_dataset_shape(const std::string& file, const std::string& name) {
  H5::Exception::dontPrint();
  if (!std::filesystem::exists(file)) throw IoError("HDF5 file '" + file + "' does not exist");
  H5::H5File h5;
  try {
    h5.openFile(file, H5F_ACC_RDONLY);
  } catch (const H5::Exception&) {
    throw IoError("cannot open '" + file + "' as an HDF5 file");
  }
  std::string path = name.empty() || name[0] == '/' ? name : "/" + name;
  if (!h5.nameExists(path)) throw InputError("HDF5 file '" + file + "' has no dataset '" + path + "'");
  try {
    H5::DataSet ds = h5.openDataSet(path);
    H5::DataSpace space = ds.getSpace();
    int rank = space.getSimpleExtentNdims();
    std::vector<hsize_t> dims(rank);
    space.getSimpleExtentDims(dims.data());
    return std::vector<int64_t>(dims.begin(), dims.end());
  } catch (const H5::Exception& e) {
    throw InputError("HDF5 file '" + file + "': '" + path + "' is not a readable dataset");
  }
}

}  // namespace net2net::io
