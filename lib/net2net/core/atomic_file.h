// Writes that matter go to a temporary name in the same folder, are flushed to disk, and are
// renamed over the target: a reader never sees a half-written file under the final name.
#pragma once
#include <functional>
#include <string>

namespace net2net {

// Calls write(tmp_path), fsyncs tmp_path, renames it to path and fsyncs the folder.
// On any exception the temporary file is removed and the target is left untouched.
void write_atomically(const std::string& path, const std::function<void(const std::string&)>& write);

// Convenience: writes text atomically.
void write_text_atomically(const std::string& path, const std::string& text);

// Reads a whole text file; IoError naming the file when it cannot.
std::string read_text_file(const std::string& path);

}  // namespace net2net
