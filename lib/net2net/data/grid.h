// Image grids for humans: a row per condition, a column per sample, the condition written to
// the left of its row (stb_easy_font: a built-in bitmap font, no font files needed).
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

namespace net2net::data {

// images [rows * cols, C, H, W] in [-1, 1], row-major; returns [C, H', W'] in [-1, 1] on a
// white background with 2-pixel gaps and the row labels (ASCII) in black.
torch::Tensor make_grid(const torch::Tensor& images, int64_t rows, int64_t cols, const std::vector<std::string>& row_labels,
                        int label_width = 0);

// Width in pixels of a text in the grid's font.
int text_width(const std::string& text);

}  // namespace net2net::data
