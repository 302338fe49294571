// A small SVG writer for self-contained figures (no scripts, fonts or external resources).
#pragma once
#include <sstream>
#include <string>
#include <vector>

namespace ess::svg {

// "Nice" tick positions covering [lo, hi] (about `count` of them).
std::vector<double> nice_ticks(double lo, double hi, int count = 5);
std::string format_tick(double v);
// Perceptually ordered colour (viridis-like) for t in [0, 1], as "#rrggbb".
std::string colormap(double t);
std::string escape(const std::string& text);

class Document {
 public:
  Document(double width, double height);
  void rect(double x, double y, double w, double h, const std::string& fill, const std::string& extra = "");
  void line(double x1, double y1, double x2, double y2, const std::string& stroke, double width = 1,
            const std::string& extra = "");
  void polyline(const std::vector<double>& xs, const std::vector<double>& ys, const std::string& stroke,
                double width = 1.5, const std::string& extra = "");
  void circle(double x, double y, double r, const std::string& fill, const std::string& extra = "");
  // anchor: start|middle|end
  void text(double x, double y, const std::string& s, double size = 12, const std::string& anchor = "start",
            const std::string& extra = "");
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
  void frame(const std::string& title, const std::string& xlabel, const std::string& ylabel, bool xticks = true);
  void custom_xticks(const std::vector<double>& at, const std::vector<std::string>& labels);
  double x0() const { return x_; }
  double y0() const { return y_; }
  double width() const { return w_; }
  double height() const { return h_; }

 private:
  Document& d_;
  double x_, y_, w_, h_, xmin_, xmax_, ymin_, ymax_;
};

}  // namespace ess::svg
