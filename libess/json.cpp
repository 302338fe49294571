#include "libess/json.h"

#include <limits>
#include <set>
#include <vector>

#include "libess/error.h"
#include "libess/files.h"

namespace ess {

namespace {

using Event = nlohmann::json::parse_event_t;

// Python's bare literals outside strings, replaced by string tokens (which cannot occur in the
// text) before parsing; the parser callback turns the tokens back into doubles.
struct PythonLiterals {
  std::string pos_inf, neg_inf, nan;

  std::string replace(std::string_view text) {
    std::string tag = "__ess_literal_";
    while (text.find(tag) != std::string_view::npos) tag += "_";
    pos_inf = tag + "+Infinity__";
    neg_inf = tag + "-Infinity__";
    nan = tag + "NaN__";
    std::string out;
    out.reserve(text.size());
    bool in_string = false;
    for (std::size_t k = 0; k < text.size(); ++k) {
      const char c = text[k];
      if (in_string) {
        out += c;
        if (c == '\\' && k + 1 < text.size())
          out += text[++k];
        else if (c == '"')
          in_string = false;
        continue;
      }
      if (c == '"') {
        in_string = true;
        out += c;
      } else if (text.compare(k, 9, "-Infinity") == 0) {
        out += "\"" + neg_inf + "\"";
        k += 8;
      } else if (text.compare(k, 8, "Infinity") == 0) {
        out += "\"" + pos_inf + "\"";
        k += 7;
      } else if (text.compare(k, 3, "NaN") == 0) {
        out += "\"" + nan + "\"";
        k += 2;
      } else {
        out += c;
      }
    }
    return out;
  }
  bool is_token(const std::string& s) const { return s == pos_inf || s == neg_inf || s == nan; }
  double value(const std::string& s) const {
    if (s == pos_inf) return std::numeric_limits<double>::infinity();
    if (s == neg_inf) return -std::numeric_limits<double>::infinity();
    return std::numeric_limits<double>::quiet_NaN();
  }
};

}  // namespace

nlohmann::json parse_json(std::string_view text, const std::string& what, const JsonLimits& limits) {
  if (text.size() > limits.max_bytes)
    throw InputError(what + ": JSON text is " + std::to_string(text.size()) + " bytes, more than the " +
                     std::to_string(limits.max_bytes) + " accepted");
  const auto nul = text.find('\0');
  if (nul != std::string_view::npos)
    throw InputError(what + ": not valid JSON (NUL byte at offset " + std::to_string(nul) +
                     "; only whitespace may follow the JSON value)");
  PythonLiterals literals;
  std::string replaced;
  if (limits.python_literals) {
    replaced = literals.replace(text);
    text = replaced;
  }
  std::uint64_t values = 0;
  std::vector<std::set<std::string>> keys;  // keys seen in each open object, innermost last
  const auto callback = [&](int depth, Event event, nlohmann::json& v) {
    switch (event) {
      case Event::object_start:
      case Event::array_start:
        // `depth` counts the containers around this one; the top-level value is at nesting 1.
        if (depth >= limits.max_depth)
          throw InputError(what + ": JSON nested deeper than " + std::to_string(limits.max_depth) + " levels");
        if (event == Event::object_start && limits.unique_keys) keys.emplace_back();
        ++values;
        break;
      case Event::object_end:
        if (limits.unique_keys && !keys.empty()) keys.pop_back();
        break;
      case Event::key: {
        const auto& k = v.get_ref<const std::string&>();
        if (limits.python_literals && literals.is_token(k))
          throw InputError(what + ": not valid JSON (bare Infinity/NaN used as an object key)");
        if (limits.unique_keys && !keys.empty() && !keys.back().insert(k).second)
          throw InputError(what + ": key '" + k + "' appears more than once in the same object");
        break;
      }
      case Event::value:
        ++values;
        if (limits.python_literals && v.is_string() && literals.is_token(v.get_ref<const std::string&>()))
          v = literals.value(v.get_ref<const std::string&>());
        break;
      case Event::array_end:
        break;
    }
    if (values > limits.max_values)
      throw InputError(what + ": JSON holds more than " + std::to_string(limits.max_values) + " values");
    return true;
  };
  try {
    return nlohmann::json::parse(text.begin(), text.end(), callback);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(what + ": not valid JSON (" + e.what() + ")");
  }
}

nlohmann::json read_json_file(const std::string& path, const JsonLimits& limits) {
  return parse_json(read_input_file(path, limits.max_bytes, "JSON file"), path, limits);
}

}  // namespace ess
