#include "libess/svg.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace ess::svg {

std::vector<double> nice_ticks(double lo, double hi, int count) {
  if (!(hi > lo)) hi = lo + 1;
  const double raw = (hi - lo) / std::max(count, 1);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  std::vector<double> t;
  for (double v = std::ceil(lo / step - 1e-9) * step; v <= hi + 1e-9 * step; v += step) t.push_back(std::abs(v) < 1e-12 * step ? 0.0 : v);
  return t;
}

std::string format_tick(double v) {
  char buf[32];
  if (v != 0 && (std::abs(v) >= 1e5 || std::abs(v) < 1e-3))
    std::snprintf(buf, sizeof buf, "%.0e", v);
  else
    std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

std::string colormap(double t) {
  // Piecewise-linear through viridis anchor colours.
  static const double anchors[][3] = {{68, 1, 84}, {72, 40, 120}, {62, 74, 137}, {49, 104, 142}, {38, 130, 142},
                                      {31, 158, 137}, {53, 183, 121}, {109, 205, 89}, {180, 222, 44}, {253, 231, 37}};
  if (!std::isfinite(t)) return "#cccccc";
  t = std::clamp(t, 0.0, 1.0) * 9.0;
  const int k = std::min(8, static_cast<int>(t));
  const double f = t - k;
  char buf[8];
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", static_cast<int>(anchors[k][0] + f * (anchors[k + 1][0] - anchors[k][0])),
                static_cast<int>(anchors[k][1] + f * (anchors[k + 1][1] - anchors[k][1])),
                static_cast<int>(anchors[k][2] + f * (anchors[k + 1][2] - anchors[k][2])));
  return buf;
}

std::string escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      default: o += c;
    }
  }
  return o;
}

namespace {
std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}
}  // namespace

Document::Document(double width, double height) : w_(width), h_(height) {}

void Document::rect(double x, double y, double w, double h, const std::string& fill, const std::string& extra) {
  body_ << "<rect x=\"" << num(x) << "\" y=\"" << num(y) << "\" width=\"" << num(w) << "\" height=\"" << num(h)
        << "\" fill=\"" << fill << "\" " << extra << "/>\n";
}

void Document::line(double x1, double y1, double x2, double y2, const std::string& stroke, double width,
                    const std::string& extra) {
  body_ << "<line x1=\"" << num(x1) << "\" y1=\"" << num(y1) << "\" x2=\"" << num(x2) << "\" y2=\"" << num(y2)
        << "\" stroke=\"" << stroke << "\" stroke-width=\"" << width << "\" " << extra << "/>\n";
}

void Document::polyline(const std::vector<double>& xs, const std::vector<double>& ys, const std::string& stroke,
                        double width, const std::string& extra) {
  body_ << "<polyline fill=\"none\" stroke=\"" << stroke << "\" stroke-width=\"" << width << "\" " << extra
        << " points=\"";
  for (size_t k = 0; k < xs.size(); ++k)
    if (std::isfinite(xs[k]) && std::isfinite(ys[k])) body_ << num(xs[k]) << "," << num(ys[k]) << " ";
  body_ << "\"/>\n";
}

void Document::circle(double x, double y, double r, const std::string& fill, const std::string& extra) {
  body_ << "<circle cx=\"" << num(x) << "\" cy=\"" << num(y) << "\" r=\"" << num(r) << "\" fill=\"" << fill << "\" "
        << extra << "/>\n";
}

void Document::text(double x, double y, const std::string& s, double size, const std::string& anchor,
                    const std::string& extra) {
  body_ << "<text x=\"" << num(x) << "\" y=\"" << num(y) << "\" font-size=\"" << size << "\" text-anchor=\"" << anchor
        << "\" " << extra << ">" << escape(s) << "</text>\n";
}

std::string Document::str() const {
  std::ostringstream o;
  o << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << w_
    << "\" height=\"" << h_ << "\" viewBox=\"0 0 " << w_ << " " << h_
    << "\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    << body_.str() << "</svg>\n";
  return o.str();
}

Axes::Axes(Document& doc, double x, double y, double w, double h, double xmin, double xmax, double ymin, double ymax)
    : d_(doc), x_(x), y_(y), w_(w), h_(h), xmin_(xmin), xmax_(xmax > xmin ? xmax : xmin + 1), ymin_(ymin),
      ymax_(ymax > ymin ? ymax : ymin + 1) {}

double Axes::px(double x) const { return x_ + (x - xmin_) / (xmax_ - xmin_) * w_; }
double Axes::py(double y) const { return y_ + h_ - (y - ymin_) / (ymax_ - ymin_) * h_; }

void Axes::frame(const std::string& title, const std::string& xlabel, const std::string& ylabel, bool xticks) {
  d_.rect(x_, y_, w_, h_, "none", "stroke=\"#444\" stroke-width=\"1\"");
  for (double t : nice_ticks(ymin_, ymax_, 5)) {
    const double y = py(t);
    d_.line(x_, y, x_ + w_, y, "#e5e5e5", 1);
    d_.line(x_ - 4, y, x_, y, "#444", 1);
    d_.text(x_ - 6, y + 4, format_tick(t), 11, "end");
  }
  if (xticks)
    for (double t : nice_ticks(xmin_, xmax_, 6)) {
      const double x = px(t);
      d_.line(x, y_ + h_, x, y_ + h_ + 4, "#444", 1);
      d_.text(x, y_ + h_ + 16, format_tick(t), 11, "middle");
    }
  d_.text(x_ + w_ / 2, y_ - 8, title, 13, "middle", "font-weight=\"bold\"");
  d_.text(x_ + w_ / 2, y_ + h_ + 32, xlabel, 12, "middle");
  const double ly = y_ + h_ / 2;
  d_.text(x_ - 42, ly, ylabel, 12, "middle", "transform=\"rotate(-90 " + num(x_ - 42) + " " + num(ly) + ")\"");
}

void Axes::custom_xticks(const std::vector<double>& at, const std::vector<std::string>& labels) {
  for (size_t k = 0; k < at.size(); ++k) {
    const double x = px(at[k]);
    d_.line(x, y_ + h_, x, y_ + h_ + 4, "#444", 1);
    d_.text(x, y_ + h_ + 16, labels[k], 11, "middle");
  }
}

}  // namespace ess::svg
