#include "analysis/svg.h"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace ess::svg {

std::vector<double> nice_ticks(double lo, double hi, int count) {
  if (!std::isfinite(lo) || !std::isfinite(hi)) return {};
  if (!(hi > lo)) hi = lo + 1;
  const double raw = (hi - lo) / std::max(count, 1);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = 10 * mag;
  for (double m : {1.0, 2.0, 2.5, 5.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  std::vector<double> t;
  const long first = static_cast<long>(std::ceil(lo / step - 1e-9));
  for (long k = first;; ++k) {
    const double v = k * step;  // k · step, not repeated addition: no drift
    if (v > hi + 1e-9 * step) break;
    t.push_back(v == 0 ? 0.0 : v);
  }
  return t;
}

std::vector<double> integer_ticks(int lo, int hi, int count) {
  if (hi <= lo) return {static_cast<double>(lo)};
  std::vector<double> t;
  for (double v : nice_ticks(lo, hi, count))
    if (v == std::floor(v)) t.push_back(v);
  if (t.empty()) t = {static_cast<double>(lo), static_cast<double>(hi)};
  return t;
}

std::string format_tick(double v) {
  char buf[32];
  if (v != 0 && (std::abs(v) >= 1e5 || std::abs(v) < 1e-3))
    std::snprintf(buf, sizeof buf, "%.0e", v);
  else
    std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

Rgb colormap_rgb(double t) {
  // Viridis sampled at t = 0, 1/9, …, 1 (matplotlib's table), linear in between.
  static const double anchors[10][3] = {{68, 1, 84},    {72, 40, 120},  {62, 74, 137},  {49, 104, 142}, {38, 130, 142},
                                        {31, 158, 137}, {53, 183, 121}, {109, 205, 89}, {180, 222, 44}, {253, 231, 37}};
  t = std::clamp(t, 0.0, 1.0) * 9.0;
  const int k = std::min(8, static_cast<int>(t));
  const double f = t - k;
  Rgb c;
  for (int ch = 0; ch < 3; ++ch)
    c[ch] = static_cast<std::uint8_t>(std::lround(anchors[k][ch] + f * (anchors[k + 1][ch] - anchors[k][ch])));
  return c;
}

std::string hex(const Rgb& c) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", c[0], c[1], c[2]);
  return buf;
}

std::string colormap(double t) { return std::isfinite(t) ? hex(colormap_rgb(t)) : "#cccccc"; }

std::string escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&':
        o += "&amp;";
        break;
      case '<':
        o += "&lt;";
        break;
      case '>':
        o += "&gt;";
        break;
      case '"':
        o += "&quot;";
        break;
      case '\'':
        o += "&apos;";
        break;
      default:
        o += c;
    }
  }
  return o;
}

// ---- PNG ------------------------------------------------------------------------------------

std::string base64(const std::string& bytes) {
  static const char* abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t k = 0;
  for (; k + 2 < bytes.size(); k += 3) {
    const std::uint32_t v = (static_cast<unsigned char>(bytes[k]) << 16) |
                            (static_cast<unsigned char>(bytes[k + 1]) << 8) | static_cast<unsigned char>(bytes[k + 2]);
    out += abc[v >> 18];
    out += abc[(v >> 12) & 63];
    out += abc[(v >> 6) & 63];
    out += abc[v & 63];
  }
  if (k < bytes.size()) {
    std::uint32_t v = static_cast<unsigned char>(bytes[k]) << 16;
    if (k + 1 < bytes.size()) v |= static_cast<unsigned char>(bytes[k + 1]) << 8;
    out += abc[v >> 18];
    out += abc[(v >> 12) & 63];
    out += k + 1 < bytes.size() ? abc[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

namespace {

void put_be32(std::string& s, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) s += static_cast<char>((v >> shift) & 0xff);
}

void chunk(std::string& png, const char* type, const std::string& data) {
  put_be32(png, static_cast<std::uint32_t>(data.size()));
  const std::string body = std::string(type, 4) + data;
  png += body;
  put_be32(png, static_cast<std::uint32_t>(
                    ::crc32(0L, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size()))));
}

}  // namespace

std::string png_palette(int width, int height, const std::vector<std::uint8_t>& pixels,
                        const std::vector<Rgb>& palette) {
  if (width <= 0 || height <= 0 || pixels.size() != static_cast<size_t>(width) * height)
    throw std::invalid_argument("png_palette: pixel count does not match width × height");
  if (palette.empty() || palette.size() > 256) throw std::invalid_argument("png_palette: palette needs 1..256 colours");
  for (std::uint8_t p : pixels)
    if (p >= palette.size()) throw std::invalid_argument("png_palette: pixel index outside the palette");
  std::string png = "\x89PNG\r\n\x1a\n";
  std::string ihdr;
  put_be32(ihdr, static_cast<std::uint32_t>(width));
  put_be32(ihdr, static_cast<std::uint32_t>(height));
  ihdr += std::string("\x08\x03\x00\x00\x00", 5);  // 8-bit, palette, deflate, adaptive filter, no interlace
  chunk(png, "IHDR", ihdr);
  std::string plte;
  for (const Rgb& c : palette)
    plte += std::string{static_cast<char>(c[0]), static_cast<char>(c[1]), static_cast<char>(c[2])};
  chunk(png, "PLTE", plte);
  // Scanlines: filter byte 0 (none) + indices.
  std::string raw;
  raw.reserve(static_cast<size_t>(width + 1) * height);
  for (int r = 0; r < height; ++r) {
    raw += '\0';
    raw.append(reinterpret_cast<const char*>(pixels.data()) + static_cast<size_t>(r) * width, width);
  }
  // IDAT: the scanlines as one zlib stream (RFC 1950), compressed by zlib itself.
  uLongf size = ::compressBound(static_cast<uLong>(raw.size()));
  std::string z(size, '\0');
  if (::compress2(reinterpret_cast<Bytef*>(z.data()), &size, reinterpret_cast<const Bytef*>(raw.data()),
                  static_cast<uLong>(raw.size()), Z_BEST_COMPRESSION) != Z_OK)
    throw std::runtime_error("png_palette: zlib could not compress the image");
  z.resize(size);
  chunk(png, "IDAT", z);
  chunk(png, "IEND", "");
  return png;
}

// ---- Document -------------------------------------------------------------------------------

namespace {
std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}
}  // namespace

Document::Document(double width, double height) : w_(width), h_(height) {}

void Document::rect(double x, double y, double w, double h, const std::string& fill, const std::string& extra) {
  body_ << "<rect x=\"" << num(x) << "\" y=\"" << num(y) << "\" width=\"" << num(w) << "\" height=\"" << num(h)
        << "\" fill=\"" << fill << "\"" << (extra.empty() ? "" : " ") << extra << "/>\n";
}

void Document::line(double x1, double y1, double x2, double y2, const std::string& stroke, double width,
                    const std::string& extra) {
  body_ << "<line x1=\"" << num(x1) << "\" y1=\"" << num(y1) << "\" x2=\"" << num(x2) << "\" y2=\"" << num(y2)
        << "\" stroke=\"" << stroke << "\" stroke-width=\"" << width << "\"" << (extra.empty() ? "" : " ") << extra
        << "/>\n";
}

void Document::polyline(const std::vector<double>& xs, const std::vector<double>& ys, const std::string& stroke,
                        double width, const std::string& extra) {
  body_ << "<polyline fill=\"none\" stroke=\"" << stroke << "\" stroke-width=\"" << width
        << "\" stroke-linejoin=\"round\"" << (extra.empty() ? "" : " ") << extra << " points=\"";
  for (size_t k = 0; k < xs.size() && k < ys.size(); ++k)
    if (std::isfinite(xs[k]) && std::isfinite(ys[k])) body_ << num(xs[k]) << "," << num(ys[k]) << " ";
  body_ << "\"/>\n";
}

void Document::polygon(const std::vector<double>& xs, const std::vector<double>& ys, const std::string& fill,
                       const std::string& extra) {
  body_ << "<polygon fill=\"" << fill << "\"" << (extra.find("stroke=") == std::string::npos ? " stroke=\"none\"" : "")
        << (extra.empty() ? "" : " ") << extra << " points=\"";
  for (size_t k = 0; k < xs.size() && k < ys.size(); ++k)
    if (std::isfinite(xs[k]) && std::isfinite(ys[k])) body_ << num(xs[k]) << "," << num(ys[k]) << " ";
  body_ << "\"/>\n";
}

void Document::circle(double x, double y, double r, const std::string& fill, const std::string& extra) {
  body_ << "<circle cx=\"" << num(x) << "\" cy=\"" << num(y) << "\" r=\"" << num(r) << "\" fill=\"" << fill << "\""
        << (extra.empty() ? "" : " ") << extra << "/>\n";
}

void Document::text(double x, double y, const std::string& s, double size, const std::string& anchor,
                    const std::string& extra, double rotate) {
  body_ << "<text x=\"" << num(x) << "\" y=\"" << num(y) << "\" font-size=\"" << size << "\" text-anchor=\"" << anchor
        << "\"";
  if (rotate != 0) body_ << " transform=\"rotate(" << rotate << " " << num(x) << " " << num(y) << ")\"";
  body_ << (extra.empty() ? "" : " ") << extra << ">" << escape(s) << "</text>\n";
}

void Document::image_png(double x, double y, double w, double h, const std::string& png) {
  body_ << "<image x=\"" << num(x) << "\" y=\"" << num(y) << "\" width=\"" << num(w) << "\" height=\"" << num(h)
        << "\" preserveAspectRatio=\"none\" image-rendering=\"optimizeSpeed\" style=\"image-rendering:pixelated\" "
           "xlink:href=\"data:image/png;base64,"
        << base64(png) << "\"/>\n";
}

void Document::begin_group(const std::string& tooltip, const std::string& id) {
  body_ << "<g" << (id.empty() ? "" : " id=\"" + escape(id) + "\"") << ">";
  if (!tooltip.empty()) body_ << "<title>" << escape(tooltip) << "</title>";
  body_ << "\n";
}

void Document::end_group() { body_ << "</g>\n"; }

std::string Document::str() const {
  std::ostringstream o;
  o << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    << "<svg xmlns=\"http://www.w3.org/2000/svg\" xmlns:xlink=\"http://www.w3.org/1999/xlink\" width=\"" << w_
    << "\" height=\"" << h_ << "\" viewBox=\"0 0 " << w_ << " " << h_
    << "\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n"
    << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    << body_.str() << "</svg>\n";
  return o.str();
}

// ---- Axes -----------------------------------------------------------------------------------

Axes::Axes(Document& doc, double x, double y, double w, double h, double xmin, double xmax, double ymin, double ymax)
    : d_(doc),
      x_(x),
      y_(y),
      w_(w),
      h_(h),
      xmin_(xmin),
      xmax_(xmax > xmin ? xmax : xmin + 1),
      ymin_(ymin),
      ymax_(ymax > ymin ? ymax : ymin + 1) {}

double Axes::px(double x) const { return x_ + (x - xmin_) / (xmax_ - xmin_) * w_; }
double Axes::py(double y) const { return y_ + h_ - (y - ymin_) / (ymax_ - ymin_) * h_; }

void Axes::frame(const std::string& title, const std::string& xlabel, const std::string& ylabel, bool xticks) {
  for (double t : nice_ticks(ymin_, ymax_, 5)) {
    const double y = py(t);
    d_.line(x_, y, x_ + w_, y, "#e5e5e5", 1);
    d_.line(x_ - 4, y, x_, y, "#444", 1);
    d_.text(x_ - 6, y + 4, format_tick(t), 11, "end");
  }
  if (xticks)
    for (double t : nice_ticks(xmin_, xmax_, 6)) {
      if (integer_x_ && t != std::floor(t)) continue;
      const double x = px(t);
      d_.line(x, y_ + h_, x, y_ + h_ + 4, "#444", 1);
      d_.text(x, y_ + h_ + 16, format_tick(t), 11, "middle");
    }
  d_.rect(x_, y_, w_, h_, "none", "stroke=\"#444\" stroke-width=\"1\"");
  if (!title.empty()) d_.text(x_ + w_ / 2, y_ - 8, title, 13, "middle", "font-weight=\"bold\"");
  if (!xlabel.empty()) d_.text(x_ + w_ / 2, y_ + h_ + 32, xlabel, 12, "middle");
  if (!ylabel.empty()) d_.text(x_ - 42, y_ + h_ / 2, ylabel, 12, "middle", "", -90);
}

void Axes::custom_xticks(const std::vector<double>& at, const std::vector<std::string>& labels, bool rotate) {
  for (size_t k = 0; k < at.size() && k < labels.size(); ++k) {
    const double x = px(at[k]);
    d_.line(x, y_ + h_, x, y_ + h_ + 4, "#444", 1);
    if (rotate)
      d_.text(x + 4, y_ + h_ + 14, labels[k], 11, "end", "", -35);
    else
      d_.text(x, y_ + h_ + 16, labels[k], 11, "middle");
  }
}

}  // namespace ess::svg
