#include "net2net/data/grid.h"

#include <stb/stb_easy_font.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace net2net::data {

int text_width(const std::string& text) { return stb_easy_font_width(const_cast<char*>(text.c_str())); }

namespace {
// Rasterises text (quads from stb_easy_font) into img [C, H, W] at (x, y) with value v.
void draw_text(torch::Tensor& img, int x, int y, const std::string& text, float v, int max_width) {
  std::vector<char> buffer(text.size() * 300 + 1000);
  std::string clipped = text;
  while (!clipped.empty() && text_width(clipped) > max_width) clipped.pop_back();
  int quads = stb_easy_font_print(static_cast<float>(x), static_cast<float>(y), const_cast<char*>(clipped.c_str()), nullptr,
                                  buffer.data(), static_cast<int>(buffer.size()));
  const int64_t H = img.size(1), W = img.size(2);
  auto acc = img.accessor<float, 3>();
  // Each vertex: x, y, z (floats), colour (4 bytes) = 16 bytes; 4 vertices a quad.
  for (int q = 0; q < quads; ++q) {
    const float* v0 = reinterpret_cast<const float*>(buffer.data() + q * 64);
    const float* v2 = reinterpret_cast<const float*>(buffer.data() + q * 64 + 32);
    int x0 = static_cast<int>(v0[0]), y0 = static_cast<int>(v0[1]), x1 = static_cast<int>(v2[0]), y1 = static_cast<int>(v2[1]);
    for (int yy = std::max(0, y0); yy < std::min<int>(H, y1); ++yy)
      for (int xx = std::max(0, x0); xx < std::min<int>(W, x1); ++xx)
        for (int64_t c = 0; c < img.size(0); ++c) acc[c][yy][xx] = v;
  }
}
}  // namespace

torch::Tensor make_grid(const torch::Tensor& images_in, int64_t rows, int64_t cols, const std::vector<std::string>& labels,
                        int label_width) {
  auto images = images_in.detach().to(torch::kCPU, torch::kFloat32);
  TORCH_CHECK(images.dim() == 4 && images.size(0) == rows * cols, "make_grid: expected [rows*cols, C, H, W]");
  const int64_t C = images.size(1), H = images.size(2), W = images.size(3), gap = 2;
  if (label_width <= 0) {
    label_width = 0;
    for (const auto& l : labels) label_width = std::max(label_width, text_width(l) + 6);
    label_width = std::min(label_width, 220);
  }
  const int64_t height = rows * (H + gap) + gap, width = label_width + cols * (W + gap) + gap;
  auto grid = torch::ones({C, height, width});
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      int64_t y = gap + r * (H + gap), x = label_width + gap + c * (W + gap);
      grid.narrow(1, y, H).narrow(2, x, W).copy_(images[r * cols + c]);
    }
    if (r < static_cast<int64_t>(labels.size()))
      draw_text(grid, 3, static_cast<int>(gap + r * (H + gap) + H / 2 - 4), labels[r], -1.0f, label_width - 4);
  }
  return grid;
}

namespace {
std::string tick(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

// A 2-pixel line from (x0, y0) to (x1, y1) in colour rgb ([0, 1]) on img [3, H, W] in [-1, 1].
void draw_line(torch::Tensor& img, double x0, double y0, double x1, double y1, const std::array<float, 3>& rgb) {
  auto acc = img.accessor<float, 3>();
  const int64_t H = img.size(1), W = img.size(2);
  const int n = static_cast<int>(std::ceil(std::max(std::fabs(x1 - x0), std::fabs(y1 - y0)))) + 1;
  for (int i = 0; i <= n; ++i) {
    const double t = static_cast<double>(i) / n;
    const int x = static_cast<int>(std::lround(x0 + t * (x1 - x0))), y = static_cast<int>(std::lround(y0 + t * (y1 - y0)));
    for (int dy = 0; dy < 2; ++dy)
      for (int dx = 0; dx < 2; ++dx)
        if (y + dy >= 0 && y + dy < H && x + dx >= 0 && x + dx < W)
          for (int c = 0; c < 3; ++c) acc[c][y + dy][x + dx] = 2 * rgb[c] - 1;
  }
}
}  // namespace

torch::Tensor make_line_plot(const std::vector<PlotSeries>& series, const std::string& title, const std::string& x_label,
                             int width, int height) {
  auto img = torch::ones({3, height, width});
  const int left = 64, right = 16, top = 24, bottom = 36;
  double x_min = INFINITY, x_max = -INFINITY, y_min = INFINITY, y_max = -INFINITY;
  for (const auto& s : series)
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i)
      if (std::isfinite(s.x[i]) && std::isfinite(s.y[i]))
        x_min = std::min(x_min, s.x[i]), x_max = std::max(x_max, s.x[i]), y_min = std::min(y_min, s.y[i]),
        y_max = std::max(y_max, s.y[i]);
  draw_text(img, 4, 6, title, -1.0f, width - 8);
  if (!std::isfinite(x_min)) return img;  // nothing to draw yet
  if (x_max == x_min) x_max = x_min + 1;
  if (y_max == y_min) y_max = y_min + 1;
  const double pad = 0.05 * (y_max - y_min);
  y_min -= pad, y_max += pad;
  const double pw = width - left - right, ph = height - top - bottom;
  auto px = [&](double x) { return left + (x - x_min) / (x_max - x_min) * pw; };
  auto py = [&](double y) { return top + (y_max - y) / (y_max - y_min) * ph; };
  const std::array<float, 3> black = {0, 0, 0}, grey = {0.85f, 0.85f, 0.85f};
  for (int k = 0; k <= 4; ++k) {  // y ticks with light grid lines
    const double y = y_min + (y_max - y_min) * k / 4;
    draw_line(img, left, py(y), width - right, py(y), grey);
    draw_text(img, 2, static_cast<int>(py(y)) - 4, tick(y), -1.0f, left - 6);
  }
  for (int k = 0; k <= 2; ++k) {
    const double x = x_min + (x_max - x_min) * k / 2;
    const std::string t = tick(x);
    draw_text(img, static_cast<int>(px(x)) - text_width(t) / 2, height - bottom + 6, t, -1.0f, 80);
  }
  draw_text(img, left + static_cast<int>(pw / 2) - text_width(x_label) / 2, height - 14, x_label, -1.0f, width);
  draw_line(img, left, top, left, height - bottom, black);
  draw_line(img, left, height - bottom, width - right, height - bottom, black);
  int legend_y = top + 4;
  for (const auto& s : series) {
    bool has_last = false;
    double lx = 0, ly = 0;
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      if (has_last) draw_line(img, lx, ly, px(s.x[i]), py(s.y[i]), s.rgb);
      else draw_line(img, px(s.x[i]), py(s.y[i]), px(s.x[i]), py(s.y[i]), s.rgb);  // a lone point
      lx = px(s.x[i]), ly = py(s.y[i]), has_last = true;
    }
    const int lx0 = width - right - 110;
    draw_line(img, lx0, legend_y + 3, lx0 + 20, legend_y + 3, s.rgb);
    draw_text(img, lx0 + 26, legend_y - 1, s.name, -1.0f, 84);
    legend_y += 14;
  }
  return img;
}

}  // namespace net2net::data
