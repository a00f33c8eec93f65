#include "net2net/data/grid.h"

#include <stb/stb_easy_font.h>

#include <algorithm>

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

}  // namespace net2net::data
