// A small SVG writer for self-contained figures: no scripts, no fonts, no external resources.
// Raster content (heat maps) is embedded as a palette PNG in a data: URI, so a figure with many
// layers and channels stays small and quick to open in a browser.
#pragma once
#include <array>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

namespace ess::svg {

// "Nice" tick positions (steps 1, 2, 2.5, 5 × 10^k) covering [lo, hi], about `count` of them.
std::vector<double> nice_ticks(double lo, double hi, int count = 5);
// Integer ticks in [lo, hi] (for channel and layer axes).
std::vector<double> integer_ticks(int lo, int hi, int count = 5);
std::string format_tick(double v);

using Rgb = std::array<std::uint8_t, 3>;
// Perceptually ordered colour map (viridis anchors, linear in between) for t in [0, 1].
Rgb colormap_rgb(double t);
std::string colormap(double t);  // "#rrggbb"; non-finite t → light grey
std::string hex(const Rgb& c);
std::string escape(const std::string& text);  // XML text / attribute escaping

// Encoders behind embedded images (exposed for tests).
std::string base64(const std::string& bytes);
// An 8-bit palette PNG (colour type 3, IDAT deflated by zlib): `pixels` holds width × height
// palette indices, row-major from the top; palette ≤ 256 entries.
std::string png_palette(int width, int height, const std::vector<std::uint8_t>& pixels,
                        const std::vector<Rgb>& palette);

class Document {
 public:
  Document(double width, double height);
  void rect(double x, double y, double w, double h, const std::string& fill, const std::string& extra = "");
  void line(double x1, double y1, double x2, double y2, const std::string& stroke, double width = 1,
            const std::string& extra = "");
  // Points with a non-finite coordinate are dropped.
  void polyline(const std::vector<double>& xs, const std::vector<double>& ys, const std::string& stroke,
                double width = 1.5, const std::string& extra = "");
  // A closed filled polygon (bands between two curves).
  void polygon(const std::vector<double>& xs, const std::vector<double>& ys, const std::string& fill,
               const std::string& extra = "");
  void circle(double x, double y, double r, const std::string& fill, const std::string& extra = "");
  // anchor: start|middle|end; rotate: degrees about (x, y).
  void text(double x, double y, const std::string& s, double size = 12, const std::string& anchor = "start",
            const std::string& extra = "", double rotate = 0);
  // A PNG stretched over the rectangle, drawn with crisp (nearest-neighbour) pixels.
  void image_png(double x, double y, double w, double h, const std::string& png);
  // A group with a tooltip (<title>), shown by browsers on hover.
  void begin_group(const std::string& tooltip, const std::string& id = "");
  void end_group();
  std::string str() const;

 private:
  double w_, h_;
  std::ostringstream body_;
};

// A rectangular plotting area mapping data coordinates to the page, with axes and labels.
class Axes {
 public:
  Axes(Document& doc, double x, double y, double w, double h, double xmin, double xmax, double ymin, double ymax);
  double px(double x) const;
  double py(double y) const;
  // Only integer x ticks (block indices, channels).
  void set_integer_x(bool on) { integer_x_ = on; }
  // Frame, grid, y ticks, (optionally) x ticks, title above, x label below, y label rotated left.
  void frame(const std::string& title, const std::string& xlabel, const std::string& ylabel, bool xticks = true);
  // x tick labels at given positions; rotated (−35°) when `rotate` is set.
  void custom_xticks(const std::vector<double>& at, const std::vector<std::string>& labels, bool rotate = false);
  double x0() const { return x_; }
  double y0() const { return y_; }
  double width() const { return w_; }
  double height() const { return h_; }
  double ymax() const { return ymax_; }

 private:
  Document& d_;
  double x_, y_, w_, h_, xmin_, xmax_, ymin_, ymax_;
  bool integer_x_ = false;
};

}  // namespace ess::svg
