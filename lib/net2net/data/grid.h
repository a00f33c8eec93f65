// Image grids for humans: a row per condition, a column per sample, the condition written to
// the left of its row (stb_easy_font: a built-in bitmap font, no font files needed).
#pragma once
#include <torch/torch.h>

#include <array>
#include <string>
#include <vector>

namespace net2net::data {

// images [rows * cols, C, H, W] in [-1, 1], row-major; returns [C, H', W'] in [-1, 1] on a
// white background with 2-pixel gaps and the row labels (ASCII) in black.
torch::Tensor make_grid(const torch::Tensor& images, int64_t rows, int64_t cols, const std::vector<std::string>& row_labels,
                        int label_width = 0);

// Width in pixels of a text in the grid's font.
int text_width(const std::string& text);

// A line plot for humans (net2net-train's images/loss.png): each series a polyline over
// (x, y) points in its colour (RGB in [0, 1]), axes with a few tick values, the names as a
// legend and a title. Non-finite points are left out. Returns [3, height, width] in [-1, 1].
struct PlotSeries {
  std::string name;
  std::vector<double> x, y;
  std::array<float, 3> rgb;
};
torch::Tensor make_line_plot(const std::vector<PlotSeries>& series, const std::string& title, const std::string& x_label,
                             int width = 640, int height = 400);

}  // namespace net2net::data
