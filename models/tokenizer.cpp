// tokenizer.json reader and BPE encoder. The pipeline follows the `tokenizers` library:
//   1. added tokens with normalized=false are cut out of the raw text (leftmost-longest match);
//   2. every other segment is normalized, then added tokens with normalized=true are cut out;
//   3. each remaining piece is pre-tokenized into words;
//   4. each word goes through the BPE model (merges by rank, leftmost first among equal ranks).
// Regular expressions (Split, Replace, the ByteLevel GPT-2 pattern) run on PCRE2; the Oniguruma
// meaning of \s (Unicode White_Space) is written out explicitly, and \p{…} classes are expanded
// from ICU, so character classes and normalization follow one Unicode version (ICU's) instead of
// PCRE2's older tables. Normalization forms come from ICU.
#include "models/tokenizer.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <functional>
#include <mutex>
#include <queue>
#include <sstream>
#include <unordered_map>

#include <nlohmann/json.hpp>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <unicode/locid.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/uniset.h>
#include <unicode/unistr.h>

#include "libess/error.h"
#include "libess/json.h"

namespace ess::models {

using json = nlohmann::json;

size_t invalid_utf8_offset(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    int len = 0;
    char32_t cp = 0, min = 0;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2, cp = c & 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3, cp = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4, cp = c & 0x07, min = 0x10000;
    } else {
      return i;
    }
    if (i + len > n) return i;
    for (int k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += len;
  }
  return std::string_view::npos;
}

namespace {

// ---------------------------------------------------------------------------------------------
// UTF-8 helpers (the input is validated once, up front)

size_t utf8_len(unsigned char lead) { return lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4; }

char32_t utf8_decode(std::string_view s, size_t i) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data()) + i;
  switch (utf8_len(p[0])) {
    case 1:
      return p[0];
    case 2:
      return ((p[0] & 0x1Fu) << 6) | (p[1] & 0x3Fu);
    case 3:
      return ((p[0] & 0x0Fu) << 12) | ((p[1] & 0x3Fu) << 6) | (p[2] & 0x3Fu);
    default:
      return ((p[0] & 0x07u) << 18) | ((p[1] & 0x3Fu) << 12) | ((p[2] & 0x3Fu) << 6) | (p[3] & 0x3Fu);
  }
}

void utf8_append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Rust's char::is_whitespace: the Unicode White_Space property.
bool is_white_space(char32_t c) { return u_isUWhiteSpace(static_cast<UChar32>(c)); }
// Rust regex's \w: Alphabetic, marks, decimal digits, connector punctuation, join controls.
bool is_word_char(char32_t c) {
  const auto u = static_cast<UChar32>(c);
  if (u_hasBinaryProperty(u, UCHAR_ALPHABETIC) || u_hasBinaryProperty(u, UCHAR_JOIN_CONTROL)) return true;
  const int8_t t = u_charType(u);
  return t == U_NON_SPACING_MARK || t == U_ENCLOSING_MARK || t == U_COMBINING_SPACING_MARK ||
         t == U_DECIMAL_DIGIT_NUMBER || t == U_CONNECTOR_PUNCTUATION;
}
// Rust's char::is_numeric: general categories Nd, Nl, No.
bool is_numeric(char32_t c) {
  const int8_t t = u_charType(static_cast<UChar32>(c));
  return t == U_DECIMAL_DIGIT_NUMBER || t == U_LETTER_NUMBER || t == U_OTHER_NUMBER;
}

size_t last_char_start(std::string_view s) {
  size_t i = s.size();
  while (i > 0 && (static_cast<unsigned char>(s[i - 1]) & 0xC0) == 0x80) --i;
  return i == 0 ? 0 : i - 1;
}

// ---------------------------------------------------------------------------------------------
// Regular expressions: PCRE2 (UTF, Unicode properties), with Oniguruma's \s spelled out.

// Oniguruma's \s in Unicode mode (U+0009–U+000D, U+0020, U+0085 and the Z* separators).
constexpr const char* kOnigSpace =
    "\\x{9}-\\x{d}\\x{20}\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}";

// The code points of Unicode property `name` (a general category such as L or N) as PCRE2 class
// ranges, from ICU, so \p{L} and \p{N} follow ICU's Unicode version (the one NFC uses) rather than
// PCRE2's older tables. "" when ICU does not know the name.
std::string icu_class_ranges(const std::string& name) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::UnicodeSet set(icu::UnicodeString::fromUTF8("[:" + name + ":]"), status);
  if (U_FAILURE(status)) return "";
  std::string out;
  char buf[32];
  for (int32_t r = 0; r < set.getRangeCount(); ++r) {
    UChar32 a = set.getRangeStart(r), b = set.getRangeEnd(r);
    if (a <= 0xDFFF && b >= 0xD800) {  // surrogates are not characters in UTF mode
      if (a < 0xD800) {
        std::snprintf(buf, sizeof buf, "\\x{%x}-\\x{%x}", static_cast<unsigned>(a), 0xD7FFu);
        out += buf;
      }
      if (b <= 0xDFFF) continue;
      a = 0xE000;
    }
    std::snprintf(buf, sizeof buf, "\\x{%x}", static_cast<unsigned>(a));
    out += buf;
    if (b != a) {
      std::snprintf(buf, sizeof buf, "-\\x{%x}", static_cast<unsigned>(b));
      out += buf;
    }
  }
  return out;
}

std::string translate_onig_pattern(const std::string& p) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char n = p[i + 1];
      if ((n == 'p' || n == 'P') && i + 2 < p.size()) {  // \p{Name}, \pL; \P inside a class stays PCRE2's
        std::string name;
        size_t end = i + 2;
        if (p[i + 2] == '{') {
          const size_t close = p.find('}', i + 3);
          if (close != std::string::npos) name = p.substr(i + 3, close - i - 3), end = close;
        } else {
          name = p.substr(i + 2, 1);
        }
        const bool negated = n == 'P';
        const std::string ranges =
            name.empty() || name[0] == '^' || (negated && in_class) ? "" : icu_class_ranges(name);
        if (!ranges.empty()) {
          out += in_class ? ranges : std::string(negated ? "[^" : "[") + ranges + "]";
          i = end;
          continue;
        }
      }
      if (n == 's') {
        out += in_class ? std::string(kOnigSpace) : std::string("[") + kOnigSpace + "]";
      } else if (n == 'S' && !in_class) {
        out += std::string("[^") + kOnigSpace + "]";
      } else {
        out += c;
        out += n;
      }
      ++i;
      continue;
    }
    if (c == '[' && !in_class) {
      in_class = true;
      out += c;
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];  // a leading ] is literal
      continue;
    }
    if (c == ']' && in_class) in_class = false;
    out += c;
  }
  return out;
}

class Regex {
 public:
  Regex(const std::string& pattern, const std::string& where) {
    const std::string translated = translate_onig_pattern(pattern);
    int err = 0;
    PCRE2_SIZE offset = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(), PCRE2_UTF | PCRE2_UCP,
                          &err, &offset, nullptr);
    if (!code_) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      throw InputError(where + ": regular expression '" + pattern + "' does not compile at offset " +
                       std::to_string(offset) + ": " + reinterpret_cast<const char*>(msg));
    }
    pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);  // falls back to the interpreter when unavailable
    match_ = pcre2_match_data_create_from_pattern(code_, nullptr);
    context_ = pcre2_match_context_create(nullptr);
    stack_ = pcre2_jit_stack_create(32 * 1024, 64 * 1024 * 1024, nullptr);
    if (stack_) pcre2_jit_stack_assign(context_, nullptr, stack_);
  }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  ~Regex() {
    pcre2_jit_stack_free(stack_);
    pcre2_match_context_free(context_);
    pcre2_match_data_free(match_);
    pcre2_code_free(code_);
  }
  // Non-overlapping matches left to right (byte offsets); after an empty match the search moves
  // on by one character, as Oniguruma's find_iter does.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view s) const {
    std::vector<std::pair<size_t, size_t>> out;
    size_t start = 0;
    while (start <= s.size()) {
      const int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), start, PCRE2_NO_UTF_CHECK,
                                 match_, context_);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof msg);
        throw InputError(std::string("tokenizer regular expression failed: ") + reinterpret_cast<const char*>(msg));
      }
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(match_);
      out.emplace_back(ov[0], ov[1]);
      if (ov[1] == ov[0]) {
        if (ov[1] >= s.size()) break;
        start = ov[1] + utf8_len(static_cast<unsigned char>(s[ov[1]]));
      } else {
        start = ov[1];
      }
    }
    return out;
  }

 private:
  pcre2_code* code_ = nullptr;
  pcre2_match_data* match_ = nullptr;
  pcre2_match_context* context_ = nullptr;
  pcre2_jit_stack* stack_ = nullptr;
};

// A literal or regular-expression pattern ({"String": "…"} or {"Regex": "…"}).
struct Pattern {
  std::string literal;
  std::shared_ptr<Regex> regex;
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view s) const {
    if (regex) return regex->find_all(s);
    std::vector<std::pair<size_t, size_t>> out;
    if (literal.empty()) return out;
    for (size_t pos = s.find(literal); pos != std::string_view::npos; pos = s.find(literal, pos + literal.size()))
      out.emplace_back(pos, pos + literal.size());
    return out;
  }
};

Pattern parse_pattern(const json& j, const std::string& where) {
  Pattern p;
  if (j.is_object() && j.contains("String") && j["String"].is_string()) {
    p.literal = j["String"].get<std::string>();
  } else if (j.is_object() && j.contains("Regex") && j["Regex"].is_string()) {
    p.regex = std::make_shared<Regex>(j["Regex"].get<std::string>(), where);
  } else {
    throw InputError(where + ": pattern must be {\"String\": …} or {\"Regex\": …}, got " + j.dump());
  }
  return p;
}

// The tokenizers library's split of a string by pattern matches: every match and every stretch
// between matches is an interval; `behavior` decides what becomes of the matches.
enum class SplitBehavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };

std::vector<std::pair<size_t, size_t>> split_intervals(std::string_view s,
                                                       const std::vector<std::pair<size_t, size_t>>& matches,
                                                       SplitBehavior behavior, bool invert) {
  std::vector<std::pair<std::pair<size_t, size_t>, bool>> all;  // (interval, is_match)
  size_t prev = 0;
  for (const auto& [b, e] : matches) {
    if (prev != b) all.push_back({{prev, b}, false});
    all.push_back({{b, e}, true});
    prev = e;
  }
  if (prev != s.size()) all.push_back({{prev, s.size()}, false});
  if (invert)
    for (auto& a : all) a.second = !a.second;
  std::vector<std::pair<size_t, size_t>> out;
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::isolated:
      for (const auto& a : all) out.push_back(a.first);
      break;
    case SplitBehavior::removed:
      for (const auto& a : all)
        if (!a.second) out.push_back(a.first);
      break;
    case SplitBehavior::contiguous:
      for (const auto& [iv, is_match] : all) {
        if (is_match == previous_match && !out.empty())
          out.back().second = iv.second;
        else
          out.push_back(iv);
        previous_match = is_match;
      }
      break;
    case SplitBehavior::merged_with_previous:
      for (const auto& [iv, is_match] : all) {
        if (is_match && !previous_match && !out.empty())
          out.back().second = iv.second;
        else
          out.push_back(iv);
        previous_match = is_match;
      }
      break;
    case SplitBehavior::merged_with_next:
      for (auto it = all.rbegin(); it != all.rend(); ++it) {
        if (it->second && !previous_match && !out.empty())
          out.back().first = it->first.first;
        else
          out.push_back(it->first);
        previous_match = it->second;
      }
      std::reverse(out.begin(), out.end());
      break;
  }
  return out;
}

// A piece of text on its way to the model; at_start: it begins at offset 0 of the original text
// (Metaspace's prepend_scheme "first").
struct Piece {
  std::string text;
  bool at_start = false;
};

// Replaces `pieces` by the non-empty sub-pieces `f` cuts each one into.
template <class F>
void split_pieces(std::vector<Piece>& pieces, F&& f) {
  std::vector<Piece> out;
  out.reserve(pieces.size());
  for (auto& p : pieces) {
    for (auto& [b, e] : f(p)) {
      if (e <= b) continue;
      out.push_back({p.text.substr(b, e - b), p.at_start && b == 0});
    }
  }
  pieces = std::move(out);
}

// ---------------------------------------------------------------------------------------------
// Normalizers

using Normalizer = std::function<void(std::string&)>;

std::string where_of(const std::string& file, const std::string& kind) { return file + ": " + kind; }

std::string get_type(const json& j, const std::string& where) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
    throw InputError(where + " has no \"type\": " + j.dump().substr(0, 200));
  return j["type"].get<std::string>();
}

bool get_bool(const json& j, const char* key, bool fallback) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_boolean()) throw InputError(std::string("field \"") + key + "\" must be true or false");
  return j[key].get<bool>();
}

Normalizer icu_normalizer(const std::string& form, const std::string& where) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* n = form == "NFC"    ? icu::Normalizer2::getNFCInstance(status)
                              : form == "NFD"  ? icu::Normalizer2::getNFDInstance(status)
                              : form == "NFKC" ? icu::Normalizer2::getNFKCInstance(status)
                                               : icu::Normalizer2::getNFKDInstance(status);
  if (U_FAILURE(status) || !n) throw InputError(where + ": ICU has no " + form + " normalizer");
  return [n](std::string& s) {
    UErrorCode st = U_ZERO_ERROR;
    const icu::UnicodeString u = icu::UnicodeString::fromUTF8(s);
    if (n->isNormalized(u, st) && U_SUCCESS(st)) return;
    st = U_ZERO_ERROR;
    const icu::UnicodeString r = n->normalize(u, st);
    if (U_FAILURE(st)) throw InputError(std::string("Unicode normalization failed: ") + u_errorName(st));
    s.clear();
    r.toUTF8String(s);
  };
}

void replace_all(std::string& s, const Pattern& pattern, const std::string& content) {
  const auto matches = pattern.find_all(s);
  if (matches.empty()) return;
  std::string out;
  size_t prev = 0;
  for (const auto& [b, e] : matches) {
    out.append(s, prev, b - prev);
    out += content;
    prev = e;
  }
  out.append(s, prev, std::string::npos);
  s = std::move(out);
}

Normalizer make_normalizer(const json& j, const std::string& file, std::string& name) {
  const std::string where = where_of(file, "normalizer");
  const std::string type = get_type(j, where);
  if (type == "Sequence") {
    std::vector<Normalizer> parts;
    std::string names;
    for (const auto& sub : j.value("normalizers", json::array())) {
      std::string n;
      parts.push_back(make_normalizer(sub, file, n));
      names += (names.empty() ? "" : ", ") + n;
    }
    name = "Sequence[" + names + "]";
    return [parts](std::string& s) {
      for (const auto& p : parts) p(s);
    };
  }
  name = type;
  if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") return icu_normalizer(type, where);
  if (type == "Lowercase")
    return [](std::string& s) {
      std::string out;
      out.reserve(s.size());
      for (size_t i = 0; i < s.size(); i += utf8_len(static_cast<unsigned char>(s[i]))) {
        const char32_t c = utf8_decode(s, i);
        if (c < 0x80) {
          out += static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
          continue;
        }
        icu::UnicodeString u(static_cast<UChar32>(c));  // per character, as Rust's char::to_lowercase
        u.toLower(icu::Locale::getRoot());
        u.toUTF8String(out);
      }
      s = std::move(out);
    };
  if (type == "Prepend") {
    const std::string prepend = j.value("prepend", std::string());
    return [prepend](std::string& s) {
      if (!s.empty()) s.insert(0, prepend);
    };
  }
  if (type == "Replace") {
    if (!j.contains("pattern") || !j.contains("content") || !j["content"].is_string())
      throw InputError(where + ": Replace needs \"pattern\" and \"content\"");
    const Pattern pattern = parse_pattern(j["pattern"], where + " Replace");
    const std::string content = j["content"].get<std::string>();
    return [pattern, content](std::string& s) { replace_all(s, pattern, content); };
  }
  if (type == "Strip") {
    const bool left = get_bool(j, "strip_left", false), right = get_bool(j, "strip_right", false);
    return [left, right](std::string& s) {
      size_t b = 0, e = s.size();
      if (left)
        while (b < e && is_white_space(utf8_decode(s, b))) b += utf8_len(static_cast<unsigned char>(s[b]));
      if (right)
        while (e > b) {
          const size_t k = last_char_start(std::string_view(s).substr(0, e));
          if (!is_white_space(utf8_decode(s, k))) break;
          e = k;
        }
      s = s.substr(b, e - b);
    };
  }
  throw InputError(
      where + " '" + type +
      "' is not supported (supported: NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace, Strip, Sequence)");
}

// ---------------------------------------------------------------------------------------------
// Pre-tokenizers

using PreTokenizer = std::function<void(std::vector<Piece>&)>;

// GPT-2's byte ↔ printable-character table: bytes that are printable Latin-1 map to themselves,
// the others to U+0100 + n in byte order.
std::array<std::string, 256> byte_level_table() {
  std::array<std::string, 256> table;
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    utf8_append(table[b], printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++));
  }
  return table;
}

constexpr const char* kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

SplitBehavior parse_behavior(const json& j, const std::string& where) {
  const std::string b = j.is_string() ? j.get<std::string>() : "";
  if (b == "Removed") return SplitBehavior::removed;
  if (b == "Isolated") return SplitBehavior::isolated;
  if (b == "MergedWithPrevious") return SplitBehavior::merged_with_previous;
  if (b == "MergedWithNext") return SplitBehavior::merged_with_next;
  if (b == "Contiguous") return SplitBehavior::contiguous;
  throw InputError(where + ": unknown split behavior " + j.dump());
}

PreTokenizer make_pre_tokenizer(const json& j, const std::string& file, std::string& name) {
  const std::string where = where_of(file, "pre_tokenizer");
  const std::string type = get_type(j, where);
  if (type == "Sequence") {
    std::vector<PreTokenizer> parts;
    std::string names;
    for (const auto& sub : j.value("pretokenizers", json::array())) {
      std::string n;
      parts.push_back(make_pre_tokenizer(sub, file, n));
      names += (names.empty() ? "" : ", ") + n;
    }
    name = "Sequence[" + names + "]";
    return [parts](std::vector<Piece>& pieces) {
      for (const auto& p : parts) p(pieces);
    };
  }
  if (type == "ByteLevel") {
    const bool prefix = get_bool(j, "add_prefix_space", true), use_regex = get_bool(j, "use_regex", true);
    name = std::string("ByteLevel") + (use_regex ? "(GPT-2 regex)" : "") + (prefix ? "(add_prefix_space)" : "");
    auto re = use_regex ? std::make_shared<Regex>(kGpt2Pattern, where) : nullptr;
    auto table = std::make_shared<std::array<std::string, 256>>(byte_level_table());
    return [prefix, re, table](std::vector<Piece>& pieces) {
      split_pieces(pieces, [&](Piece& p) {
        if (prefix && (p.text.empty() || p.text[0] != ' ')) p.text.insert(0, " ");
        if (!re) return std::vector<std::pair<size_t, size_t>>{{0, p.text.size()}};
        return split_intervals(p.text, re->find_all(p.text), SplitBehavior::isolated, false);
      });
      for (auto& p : pieces) {
        std::string mapped;
        mapped.reserve(p.text.size() * 2);
        for (unsigned char c : p.text) mapped += (*table)[c];
        p.text = std::move(mapped);
      }
    };
  }
  if (type == "Split") {
    if (!j.contains("pattern")) throw InputError(where + ": Split needs \"pattern\"");
    const Pattern pattern = parse_pattern(j["pattern"], where + " Split");
    const SplitBehavior behavior = parse_behavior(j.value("behavior", json()), where + " Split");
    const bool invert = get_bool(j, "invert", false);
    name = pattern.regex ? "Split(regex)" : "Split(\"" + pattern.literal + "\")";
    return [pattern, behavior, invert](std::vector<Piece>& pieces) {
      split_pieces(pieces,
                   [&](Piece& p) { return split_intervals(p.text, pattern.find_all(p.text), behavior, invert); });
    };
  }
  if (type == "Metaspace") {
    const std::string replacement = j.value("replacement", std::string("\xe2\x96\x81"));
    std::string scheme = j.value("prepend_scheme", std::string("always"));
    if (j.contains("add_prefix_space") && j["add_prefix_space"].is_boolean() && !j["add_prefix_space"].get<bool>()) {
      if (scheme != "never")
        throw InputError(where + ": Metaspace add_prefix_space=false does not match prepend_scheme '" + scheme + "'");
    }
    if (scheme != "always" && scheme != "first" && scheme != "never")
      throw InputError(where + ": Metaspace prepend_scheme '" + scheme + "' is not always, first or never");
    const bool split = get_bool(j, "split", true);
    name = "Metaspace(prepend " + scheme + (split ? ", split" : "") + ")";
    const Pattern space{" ", nullptr}, rep{replacement, nullptr};
    return [=](std::vector<Piece>& pieces) {
      split_pieces(pieces, [&](Piece& p) {
        replace_all(p.text, space, replacement);
        const bool starts = p.text.compare(0, replacement.size(), replacement) == 0;
        if (!starts && (scheme == "always" || (scheme == "first" && p.at_start))) p.text.insert(0, replacement);
        if (!split) return std::vector<std::pair<size_t, size_t>>{{0, p.text.size()}};
        return split_intervals(p.text, rep.find_all(p.text), SplitBehavior::merged_with_next, false);
      });
    };
  }
  if (type == "Digits") {
    const bool individual = get_bool(j, "individual_digits", false);
    name = individual ? "Digits(individual)" : "Digits";
    return [individual](std::vector<Piece>& pieces) {
      split_pieces(pieces, [&](Piece& p) {
        std::vector<std::pair<size_t, size_t>> matches;
        for (size_t i = 0; i < p.text.size();) {
          const size_t len = utf8_len(static_cast<unsigned char>(p.text[i]));
          if (is_numeric(utf8_decode(p.text, i))) matches.emplace_back(i, i + len);
          i += len;
        }
        return split_intervals(p.text, matches, individual ? SplitBehavior::isolated : SplitBehavior::contiguous,
                               false);
      });
    };
  }
  throw InputError(where + " '" + type +
                   "' is not supported (supported: ByteLevel, Split, Metaspace, Digits, Sequence)");
}

// ---------------------------------------------------------------------------------------------
// BPE model

struct Bpe {
  std::unordered_map<std::string, int> vocab;
  std::unordered_map<uint64_t, std::pair<int, int>> merges;  // (left id, right id) → (rank, merged id)
  int unk_id = -1;
  bool fuse_unk = false, byte_fallback = false, ignore_merges = false;
  std::optional<std::string> prefix, suffix;  // continuing_subword_prefix, end_of_word_suffix
  std::array<int, 256> byte_ids{};            // <0xNN> tokens, −1 when absent
  mutable std::unordered_map<std::string, std::vector<int>> cache;

  static uint64_t key(int a, int b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  void tokenize(const std::string& word, std::vector<int>& out) const {
    if (word.empty()) return;
    if (ignore_merges) {
      auto it = vocab.find(word);
      if (it != vocab.end()) {
        out.push_back(it->second);
        return;
      }
    }
    const bool cacheable = word.size() < 256;
    if (cacheable) {
      auto it = cache.find(word);
      if (it != cache.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    std::vector<int> ids = merge_word(word);
    out.insert(out.end(), ids.begin(), ids.end());
    if (cacheable && cache.size() < 500000) cache.emplace(word, std::move(ids));
  }

  std::vector<int> merge_word(const std::string& w) const {
    struct Symbol {
      int id, prev, next;
      bool alive;
    };
    std::vector<Symbol> sym;
    sym.reserve(w.size());
    auto add = [&](int id) {
      const int n = static_cast<int>(sym.size());
      sym.push_back({id, n - 1, -1, true});
      if (n > 0) sym[n - 1].next = n;
    };
    int pending_unk = -1;  // an unknown run not yet added (fuse_unk joins consecutive ones)
    std::string s;
    for (size_t i = 0; i < w.size();) {
      const size_t len = utf8_len(static_cast<unsigned char>(w[i]));
      s.assign(w, i, len);
      if (i > 0 && prefix) s.insert(0, *prefix);
      if (i + len >= w.size() && suffix) s += *suffix;
      i += len;
      auto it = vocab.find(s);
      if (it != vocab.end()) {
        if (pending_unk >= 0) add(pending_unk), pending_unk = -1;
        add(it->second);
        continue;
      }
      if (byte_fallback) {
        bool all = true;
        for (unsigned char c : s) all = all && byte_ids[c] >= 0;
        if (all) {
          for (unsigned char c : s) add(byte_ids[c]);
          continue;
        }
      }
      if (unk_id >= 0) {
        if (pending_unk >= 0 && !fuse_unk) add(pending_unk);
        pending_unk = unk_id;
      }
      // no unk token: the character is dropped, as in the tokenizers library
    }
    if (pending_unk >= 0) add(pending_unk);

    // Merge the lowest-ranked pair first; among equal ranks the leftmost.
    struct Merge {
      int rank, pos, new_id;
      bool operator<(const Merge& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
    };
    std::priority_queue<Merge> queue;
    for (size_t k = 0; k + 1 < sym.size(); ++k) {
      auto it = merges.find(key(sym[k].id, sym[k + 1].id));
      if (it != merges.end()) queue.push({it->second.first, static_cast<int>(k), it->second.second});
    }
    while (!queue.empty()) {
      const Merge top = queue.top();
      queue.pop();
      Symbol& cur = sym[top.pos];
      if (!cur.alive || cur.next < 0) continue;
      const int right = cur.next;
      auto it = merges.find(key(cur.id, sym[right].id));
      if (it == merges.end() || it->second.second != top.new_id) continue;  // stale entry
      cur.id = top.new_id;
      sym[right].alive = false;
      cur.next = sym[right].next;
      if (cur.next >= 0) sym[cur.next].prev = top.pos;
      if (cur.prev >= 0) {
        auto p = merges.find(key(sym[cur.prev].id, cur.id));
        if (p != merges.end()) queue.push({p->second.first, cur.prev, p->second.second});
      }
      if (cur.next >= 0) {
        auto n = merges.find(key(cur.id, sym[cur.next].id));
        if (n != merges.end()) queue.push({n->second.first, top.pos, n->second.second});
      }
    }
    std::vector<int> ids;
    for (const auto& x : sym)
      if (x.alive) ids.push_back(x.id);
    return ids;
  }
};

std::optional<std::string> optional_string(const json& j, const char* key, const std::string& where) {
  if (!j.contains(key) || j[key].is_null()) return std::nullopt;
  if (!j[key].is_string()) throw InputError(where + ": \"" + key + "\" must be a string or null");
  return j[key].get<std::string>();
}

// A token id in a tokenizer.json (vocabulary, added tokens, post-processor templates): an integer
// in [0, 2^31). get<int>() alone would wrap 2^32 + 5 to 5.
bool is_token_id(const json& v) {
  return v.is_number_integer() && v.get<long long>() >= 0 && v.get<long long>() <= INT32_MAX;
}

Bpe make_bpe(const json& m, const std::string& file, std::string& name) {
  const std::string where = where_of(file, "model");
  if (!m.is_object()) throw InputError(where + " is missing");
  std::string type = m.contains("type") && m["type"].is_string() ? m["type"].get<std::string>() : "";
  if (type.empty() && m.contains("merges")) type = "BPE";  // older files leave out the type
  if (type != "BPE")
    throw InputError(where + " type '" + (type.empty() ? m.dump().substr(0, 80) : type) +
                     "' is not supported (supported: BPE; WordPiece, Unigram and WordLevel are not)");
  if (m.contains("dropout") && !m["dropout"].is_null() && m["dropout"].get<double>() != 0.0)
    throw InputError(where + ": BPE dropout " + m["dropout"].dump() +
                     " makes encoding random; only null or 0 is supported");
  Bpe bpe;
  if (!m.contains("vocab") || !m["vocab"].is_object()) throw InputError(where + ": BPE \"vocab\" must be an object");
  for (auto it = m["vocab"].begin(); it != m["vocab"].end(); ++it) {
    if (!is_token_id(it.value()))
      throw InputError(where + ": vocab entry '" + it.key() + "' has id " + it.value().dump());
    bpe.vocab.emplace(it.key(), it.value().get<int>());
  }
  bpe.prefix = optional_string(m, "continuing_subword_prefix", where);
  bpe.suffix = optional_string(m, "end_of_word_suffix", where);
  bpe.fuse_unk = get_bool(m, "fuse_unk", false);
  bpe.byte_fallback = get_bool(m, "byte_fallback", false);
  bpe.ignore_merges = get_bool(m, "ignore_merges", false);
  if (auto unk = optional_string(m, "unk_token", where)) {
    auto it = bpe.vocab.find(*unk);
    if (it == bpe.vocab.end()) throw InputError(where + ": unk_token '" + *unk + "' is not in the vocabulary");
    bpe.unk_id = it->second;
  }
  for (int b = 0; b < 256; ++b) {
    char code[8];
    std::snprintf(code, sizeof code, "<0x%02X>", b);
    auto it = bpe.vocab.find(code);
    bpe.byte_ids[b] = it == bpe.vocab.end() ? -1 : it->second;
  }
  const json& merges = m.value("merges", json::array());
  if (!merges.is_array()) throw InputError(where + ": \"merges\" must be a list");
  const size_t prefix_len = bpe.prefix ? bpe.prefix->size() : 0;
  int rank = 0;
  for (const auto& entry : merges) {
    std::string a, b;
    if (entry.is_string()) {  // "a b" (older files)
      const std::string line = entry.get<std::string>();
      const size_t sp = line.find(' ');
      if (sp == std::string::npos || line.find(' ', sp + 1) != std::string::npos)
        throw InputError(where + ": merge " + std::to_string(rank) + " '" + line +
                         "' is not two tokens separated by a space");
      a = line.substr(0, sp), b = line.substr(sp + 1);
    } else if (entry.is_array() && entry.size() == 2 && entry[0].is_string() && entry[1].is_string()) {  // ["a", "b"]
      a = entry[0].get<std::string>(), b = entry[1].get<std::string>();
    } else {
      throw InputError(where + ": merge " + std::to_string(rank) +
                       " is neither \"a b\" nor [\"a\", \"b\"]: " + entry.dump());
    }
    auto ia = bpe.vocab.find(a), ib = bpe.vocab.find(b);
    if (ia == bpe.vocab.end() || ib == bpe.vocab.end())
      throw InputError(where + ": merge " + std::to_string(rank) + " uses '" + (ia == bpe.vocab.end() ? a : b) +
                       "', which is not in the vocabulary");
    const std::string merged = a + b.substr(std::min(prefix_len, b.size()));
    auto im = bpe.vocab.find(merged);
    if (im == bpe.vocab.end())
      throw InputError(where + ": merge " + std::to_string(rank) + " makes '" + merged +
                       "', which is not in the vocabulary");
    bpe.merges[Bpe::key(ia->second, ib->second)] = {rank, im->second};
    ++rank;
  }
  name = "BPE, " + std::to_string(bpe.vocab.size()) + " tokens, " + std::to_string(rank) + " merges";
  if (bpe.byte_fallback) name += ", byte fallback";
  if (bpe.unk_id >= 0) name += std::string(", unk") + (bpe.fuse_unk ? " (fused)" : "");
  if (bpe.ignore_merges) name += ", ignore_merges";
  return bpe;
}

// ---------------------------------------------------------------------------------------------
// Added tokens

struct AddedToken {
  int id = -1;
  std::string content;  // as matched: the normalized form for normalized=true tokens
  bool single_word = false, lstrip = false, rstrip = false, normalized = false, special = false;
};

struct Segment {
  size_t begin, end;
  int id;  // ≥ 0: an added token
};

// Leftmost-longest matching of added tokens, with single_word / lstrip / rstrip as the tokenizers
// library applies them.
class AddedMatcher {
 public:
  void add(const AddedToken& t) {
    if (t.content.empty()) return;
    auto& bucket = by_first_[static_cast<unsigned char>(t.content[0])];
    bucket.push_back(t);
    std::stable_sort(bucket.begin(), bucket.end(),
                     [](const AddedToken& a, const AddedToken& b) { return a.content.size() > b.content.size(); });
    empty_ = false;
  }
  std::vector<Segment> split(std::string_view s) const {
    std::vector<Segment> out;
    if (empty_ || s.empty()) {
      out.push_back({0, s.size(), -1});
      return out;
    }
    size_t start_offset = 0;
    for (size_t i = 0; i < s.size();) {
      const AddedToken* hit = nullptr;
      for (const auto& t : by_first_[static_cast<unsigned char>(s[i])])
        if (s.compare(i, t.content.size(), t.content) == 0) {
          hit = &t;  // longest first
          break;
        }
      if (!hit) {
        ++i;
        continue;
      }
      size_t start = i, stop = i + hit->content.size();
      i = stop;
      if (hit->single_word) {
        const bool start_space = start == 0 || !is_word_char(utf8_decode(s, last_char_start(s.substr(0, start))));
        const bool stop_space = stop == s.size() || !is_word_char(utf8_decode(s, stop));
        if (!start_space || !stop_space) continue;
      }
      if (hit->lstrip) {
        size_t b = start;
        while (b > 0) {
          const size_t k = last_char_start(s.substr(0, b));
          if (!is_white_space(utf8_decode(s, k))) break;
          b = k;
        }
        start = std::max(b, start_offset);
      }
      if (hit->rstrip)
        while (stop < s.size() && is_white_space(utf8_decode(s, stop)))
          stop += utf8_len(static_cast<unsigned char>(s[stop]));
      if (start_offset < start) out.push_back({start_offset, start, -1});
      out.push_back({start, stop, hit->id});
      start_offset = stop;
    }
    if (start_offset != s.size()) out.push_back({start_offset, s.size(), -1});
    return out;
  }

 private:
  std::array<std::vector<AddedToken>, 256> by_first_;
  bool empty_ = true;
};

// ---------------------------------------------------------------------------------------------
// Post-processors: only the single-sequence template matters here.

Tokenizer::Template make_template(const json& j, const std::string& file, std::string& name) {
  const std::string where = where_of(file, "post_processor");
  const std::string type = get_type(j, where);
  Tokenizer::Template t;
  if (type == "ByteLevel") {
    name = "ByteLevel";
    return t;
  }
  if (type == "Sequence") {
    std::string names;
    for (const auto& sub : j.value("processors", json::array())) {
      std::string n;
      const auto inner = make_template(sub, file, n);  // applied after the ones before it: wraps them
      t.prefix.insert(t.prefix.begin(), inner.prefix.begin(), inner.prefix.end());
      t.suffix.insert(t.suffix.end(), inner.suffix.begin(), inner.suffix.end());
      names += (names.empty() ? "" : ", ") + n;
    }
    name = "Sequence[" + names + "]";
    return t;
  }
  auto checked_id = [&](const json& v) {
    if (!is_token_id(v)) throw InputError(where + ": " + type + " has token id " + v.dump());
    return v.get<int>();
  };
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    auto id_of = [&](const char* key) {
      if (!j.contains(key) || !j[key].is_array() || j[key].size() != 2 || !j[key][1].is_number_integer())
        throw InputError(where + ": " + type + " needs \"" + key + "\": [token, id]");
      return checked_id(j[key][1]);
    };
    t.prefix = {id_of("cls")};
    t.suffix = {id_of("sep")};
    name = type;
    return t;
  }
  if (type == "TemplateProcessing") {
    if (!j.contains("single") || !j["single"].is_array())
      throw InputError(where + ": TemplateProcessing needs a \"single\" list");
    const json specials = j.value("special_tokens", json::object());
    bool seen_a = false;
    name = "TemplateProcessing(";
    for (const auto& piece : j["single"]) {
      if (piece.contains("Sequence")) {
        seen_a = true;
        name += " $A";
        continue;
      }
      if (!piece.contains("SpecialToken") || !piece["SpecialToken"].contains("id"))
        throw InputError(where + ": TemplateProcessing piece " + piece.dump() +
                         " is neither SpecialToken nor Sequence");
      const std::string sid = piece["SpecialToken"]["id"].get<std::string>();
      if (!specials.contains(sid) || !specials[sid].contains("ids") || !specials[sid]["ids"].is_array())
        throw InputError(where + ": TemplateProcessing special token '" + sid + "' has no ids in \"special_tokens\"");
      for (const auto& id : specials[sid]["ids"]) (seen_a ? t.suffix : t.prefix).push_back(checked_id(id));
      name += " " + sid;
    }
    name += " )";
    return t;
  }
  throw InputError(where + " '" + type +
                   "' is not supported (supported: TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing, "
                   "Sequence)");
}

}  // namespace

// ---------------------------------------------------------------------------------------------

struct Tokenizer::Impl {
  std::string file;
  Bpe bpe;
  std::vector<AddedToken> added;
  std::unordered_map<std::string, int> added_ids;
  AddedMatcher raw_matcher, normalized_matcher;
  Normalizer normalizer;
  PreTokenizer pre_tokenizer;
  Template single;
  std::vector<std::string> id_to_token;
  std::string summary;
  std::mutex mutex;  // the BPE cache and the regex match buffers are shared
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

namespace {
// Unused ids a tokenizer.json may have below its largest id.
constexpr size_t kMaxIdGap = size_t{1} << 20;

// tokenizer.json through the bounded parser (docs/reliability.md): real files are up to ~35 MB
// and nest < 10 deep.
JsonLimits tokenizer_json_limits() {
  JsonLimits limits;
  limits.max_bytes = 128ULL << 20;
  return limits;
}
}  // namespace

Tokenizer Tokenizer::from_file(const std::string& path) {
  return from_json(read_json_file(path, tokenizer_json_limits()), path);
}

Tokenizer Tokenizer::from_json_text(const std::string& text, const std::string& file) {
  return from_json(parse_json(text, file, tokenizer_json_limits()), file);
}

Tokenizer Tokenizer::from_json(const json& j, const std::string& file) {
  if (!j.is_object()) throw InputError(file + ": not a tokenizer.json (expected a JSON object)");
  auto impl = std::make_unique<Impl>();
  impl->file = file;
  try {
    std::string model_name, norm_name = "none", pre_name = "none", post_name = "none";
    impl->bpe = make_bpe(j.value("model", json()), file, model_name);
    if (j.contains("normalizer") && !j["normalizer"].is_null())
      impl->normalizer = make_normalizer(j["normalizer"], file, norm_name);
    if (j.contains("pre_tokenizer") && !j["pre_tokenizer"].is_null())
      impl->pre_tokenizer = make_pre_tokenizer(j["pre_tokenizer"], file, pre_name);
    if (j.contains("post_processor") && !j["post_processor"].is_null())
      impl->single = make_template(j["post_processor"], file, post_name);
    int max_id = -1;
    for (const auto& [tok, id] : impl->bpe.vocab) max_id = std::max(max_id, id);
    for (const auto& a : j.value("added_tokens", json::array())) {
      AddedToken t;
      if (!a.contains("id") || !a["id"].is_number_integer() || !a.contains("content") || !a["content"].is_string())
        throw InputError(file + ": added token " + a.dump() + " needs \"id\" and \"content\"");
      if (!is_token_id(a["id"]))
        throw InputError(file + ": added token " + a["content"].dump() + " has id " + a["id"].dump());
      t.id = a["id"].get<int>();
      t.content = a["content"].get<std::string>();
      t.single_word = get_bool(a, "single_word", false);
      t.lstrip = get_bool(a, "lstrip", false);
      t.rstrip = get_bool(a, "rstrip", false);
      t.normalized = get_bool(a, "normalized", !get_bool(a, "special", false));
      t.special = get_bool(a, "special", false);
      impl->added_ids[t.content] = t.id;
      max_id = std::max(max_id, t.id);
      AddedToken matched = t;
      if (t.normalized && impl->normalizer) impl->normalizer(matched.content);
      (t.normalized ? impl->normalized_matcher : impl->raw_matcher).add(matched);
      impl->added.push_back(t);
    }
    // Ids index a dense table: refuse one so far past the entries that the table would be mostly
    // holes (a corrupt file; real ones number their tokens from 0 with few gaps), before it is
    // allocated (an id near 2^31 would ask for 64 GB).
    const size_t entries = impl->bpe.vocab.size() + impl->added.size();
    if (max_id >= 0 && static_cast<size_t>(max_id) >= entries + kMaxIdGap)
      throw InputError(file + ": token id " + std::to_string(max_id) + " is far past the " + std::to_string(entries) +
                       " tokens it numbers (more than " + std::to_string(kMaxIdGap) + " unused ids)");
    impl->id_to_token.assign(static_cast<size_t>(max_id) + 1, std::string());
    for (const auto& [tok, id] : impl->bpe.vocab) impl->id_to_token[id] = tok;
    for (const auto& t : impl->added) impl->id_to_token[t.id] = t.content;
    auto check_ids = [&](const std::vector<int>& ids) {
      for (int id : ids)
        if (id < 0 || id > max_id)
          throw InputError(file + ": post_processor uses token id " + std::to_string(id) + ", outside the vocabulary");
    };
    check_ids(impl->single.prefix);
    check_ids(impl->single.suffix);
    impl->summary = model_name + "; normalizer " + norm_name + "; pre-tokenizer " + pre_name + "; post-processor " +
                    post_name + "; " + std::to_string(impl->added.size()) + " added tokens";
  } catch (const json::exception& e) {
    throw InputError(file + ": unexpected tokenizer.json content: " + e.what());
  }
  return Tokenizer(std::move(impl));
}

std::vector<int> Tokenizer::encode(std::string_view text) const {
  const Impl& m = *impl_;
  std::lock_guard<std::mutex> lock(impl_->mutex);
  std::vector<int> out;
  for (const Segment& raw : m.raw_matcher.split(text)) {
    if (raw.id >= 0) {
      out.push_back(raw.id);
      continue;
    }
    if (raw.end == raw.begin) continue;
    std::string normalized(text.substr(raw.begin, raw.end - raw.begin));
    if (m.normalizer) m.normalizer(normalized);
    for (const Segment& seg : m.normalized_matcher.split(normalized)) {
      if (seg.id >= 0) {
        out.push_back(seg.id);
        continue;
      }
      if (seg.end == seg.begin) continue;
      std::vector<Piece> pieces{{normalized.substr(seg.begin, seg.end - seg.begin), raw.begin == 0 && seg.begin == 0}};
      if (m.pre_tokenizer) m.pre_tokenizer(pieces);
      for (const auto& p : pieces) m.bpe.tokenize(p.text, out);
    }
  }
  return out;
}

const Tokenizer::Template& Tokenizer::single_template() const { return impl_->single; }

std::optional<int> Tokenizer::token_to_id(const std::string& token) const {
  auto a = impl_->added_ids.find(token);
  if (a != impl_->added_ids.end()) return a->second;
  auto v = impl_->bpe.vocab.find(token);
  if (v != impl_->bpe.vocab.end()) return v->second;
  return std::nullopt;
}

std::string Tokenizer::id_to_token(int id) const {
  return id >= 0 && id < static_cast<int>(impl_->id_to_token.size()) ? impl_->id_to_token[id] : std::string();
}

int Tokenizer::size() const { return static_cast<int>(impl_->id_to_token.size()); }

std::string Tokenizer::summary() const { return impl_->summary; }

}  // namespace ess::models
