#include "models/text_input.h"

#include <algorithm>
#include <filesystem>
#include <optional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "libess/error.h"
#include "libess/files.h"
#include "models/safetensors.h"

namespace ess {

using json = nlohmann::json;
namespace fs = std::filesystem;

std::vector<std::string_view> split_documents(std::string_view text) {
  std::vector<std::string_view> docs;
  const std::string_view delimiter = kDocumentDelimiter;
  size_t doc_start = 0, line_start = 0;
  auto push = [&](size_t b, size_t e) {
    if (e > b) docs.push_back(text.substr(b, e - b));
  };
  while (true) {
    const size_t nl = text.find('\n', line_start);
    const size_t line_end = nl == std::string_view::npos ? text.size() : nl;
    std::string_view line = text.substr(line_start, line_end - line_start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line == delimiter) {
      size_t doc_end = line_start;  // the line break before the delimiter line belongs to it
      if (doc_end > doc_start && text[doc_end - 1] == '\n') --doc_end;
      if (doc_end > doc_start && text[doc_end - 1] == '\r') --doc_end;
      push(doc_start, doc_end);
      doc_start = nl == std::string_view::npos ? text.size() : nl + 1;
    }
    if (nl == std::string_view::npos) break;
    line_start = nl + 1;
  }
  push(doc_start, text.size());
  return docs;
}

namespace {

std::optional<json> read_optional_json(const fs::path& p) {
  if (!fs::exists(p)) return std::nullopt;
  try {
    return st::read_config_json(p.string());
  } catch (const InputError&) {
    throw;
  } catch (const std::exception& e) {
    throw InputError(p.string() + ": " + e.what());
  }
}

// A token named in tokenizer_config.json: "…" or {"content": "…", …}; nullopt for null/absent.
std::optional<std::string> token_name(const json& config, const char* key) {
  if (!config.contains(key) || config[key].is_null()) return std::nullopt;
  const json& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return std::nullopt;
}

// An id in generation_config.json / config.json: an integer or a list (the first is taken), as
// written (the caller checks its range: as an int, 2^32 + 5 would wrap to 5).
std::optional<long long> token_id(const json& config, const char* key) {
  if (!config.contains(key)) return std::nullopt;
  const json& v = config[key];
  if (v.is_number_integer()) return v.get<long long>();
  if (v.is_array() && !v.empty() && v[0].is_number_integer()) return v[0].get<long long>();
  return std::nullopt;
}

struct Resolved {
  int id = -1;
  std::string source;
};

Resolved resolve(const std::string& which, const fs::path& dir, const std::optional<json>& tokenizer_config,
                 const std::optional<json>& generation_config, const std::optional<json>& config,
                 const models::Tokenizer& tok) {
  const std::string token_key = which + "_token", id_key = which + "_token_id";
  if (tokenizer_config) {
    if (auto name = token_name(*tokenizer_config, token_key.c_str())) {
      auto id = tok.token_to_id(*name);
      if (!id)
        throw InputError((dir / "tokenizer_config.json").string() + ": " + token_key + " '" + *name +
                         "' is not a token of tokenizer.json");
      return {*id, "tokenizer_config.json " + token_key};
    }
  }
  for (const auto& [cfg, file] : {std::pair{&generation_config, "generation_config.json"}, {&config, "config.json"}}) {
    if (!*cfg) continue;
    if (auto id = token_id(**cfg, id_key.c_str())) {
      if (*id < 0 || *id >= tok.size())
        throw InputError((dir / file).string() + ": " + id_key + " " + std::to_string(*id) +
                         " is outside the tokenizer's vocabulary");
      return {static_cast<int>(*id), std::string(file) + " " + id_key};
    }
  }
  return {};
}

std::string show_tokens(const models::Tokenizer& tok, const std::vector<int>& ids) {
  if (ids.empty()) return "nothing";
  std::string s;
  for (int id : ids) s += (s.empty() ? "" : " ") + tok.id_to_token(id) + " (" + std::to_string(id) + ")";
  return s;
}

}  // namespace

SpecialTokenRules special_token_rules(const std::string& dir_name, const models::Tokenizer& tok) {
  const fs::path dir(dir_name);
  const auto tokenizer_config = read_optional_json(dir / "tokenizer_config.json");
  const auto generation_config = read_optional_json(dir / "generation_config.json");
  const auto config = read_optional_json(dir / "config.json");
  const Resolved bos = resolve("bos", dir, tokenizer_config, generation_config, config, tok);
  const Resolved eos = resolve("eos", dir, tokenizer_config, generation_config, config, tok);

  SpecialTokenRules rules;
  std::string source;
  const bool flags =
      tokenizer_config &&
      ((tokenizer_config->contains("add_bos_token") && (*tokenizer_config)["add_bos_token"].is_boolean()) ||
       (tokenizer_config->contains("add_eos_token") && (*tokenizer_config)["add_eos_token"].is_boolean()));
  if (flags) {
    auto flag = [&](const char* key) {
      return tokenizer_config->contains(key) && (*tokenizer_config)[key].is_boolean() &&
             (*tokenizer_config)[key].get<bool>();
    };
    const std::string file = (dir / "tokenizer_config.json").string();
    if (flag("add_bos_token")) {
      if (bos.id < 0) throw InputError(file + ": add_bos_token is true but no bos_token is known");
      rules.prefix = {bos.id};
    }
    if (flag("add_eos_token")) {
      if (eos.id < 0) throw InputError(file + ": add_eos_token is true but no eos_token is known");
      rules.suffix = {eos.id};
    }
    source = "tokenizer_config.json add_bos_token/add_eos_token";
  } else {
    rules.prefix = tok.single_template().prefix;
    rules.suffix = tok.single_template().suffix;
    source = "tokenizer.json post-processor";
  }
  rules.separator = eos.id;
  rules.description = "before each document " + show_tokens(tok, rules.prefix) + ", after " +
                      show_tokens(tok, rules.suffix) + " (" + source + "); between documents " +
                      (eos.id >= 0 ? show_tokens(tok, {eos.id}) + " (" + eos.source + ")" : "no EOS known");
  return rules;
}

std::vector<std::vector<int>> encode_each_document(const models::Tokenizer& tok, const SpecialTokenRules& rules,
                                                   const std::vector<std::string_view>& documents) {
  std::vector<std::vector<int>> out;
  for (const auto& doc : documents) {
    std::vector<int> ids = rules.prefix;
    const std::vector<int> body = tok.encode(doc);
    ids.insert(ids.end(), body.begin(), body.end());
    ids.insert(ids.end(), rules.suffix.begin(), rules.suffix.end());
    out.push_back(std::move(ids));
  }
  return out;
}

std::vector<int> encode_documents(const models::Tokenizer& tok, const SpecialTokenRules& rules,
                                  const std::vector<std::string_view>& documents) {
  std::vector<int> stream;
  const auto encoded = encode_each_document(tok, rules, documents);
  for (size_t d = 0; d < encoded.size(); ++d) {
    if (d > 0 && (stream.empty() || stream.back() != rules.separator)) stream.push_back(rules.separator);
    stream.insert(stream.end(), encoded[d].begin(), encoded[d].end());
  }
  return stream;
}

models::Tokenizer load_checkpoint_tokenizer(const std::string& checkpoint_dir) {
  const fs::path p = fs::path(checkpoint_dir) / "tokenizer.json";
  if (!fs::exists(p))
    throw InputError(checkpoint_dir +
                     ": no tokenizer.json (--text needs the checkpoint's tokenizer.json; use --tokens "
                     "for token ids)");
  return models::Tokenizer::from_file(p.string());
}

std::string read_text_bytes(const std::string& path) { return read_input_file(path, kMaxTextBytes, "text file"); }

TokenBatch read_text_file(const std::string& path, const std::string& checkpoint_dir, int vocab,
                          const TextOptions& options) {
  if (options.max_len < 0 || options.max_len == 1) throw UsageError("--max-len must be 0 (one row) or ≥ 2");
  const std::string text = read_text_bytes(path);
  if (const size_t bad = models::invalid_utf8_offset(text); bad != std::string::npos) {
    const size_t line = 1 + std::count(text.begin(), text.begin() + static_cast<long>(bad), '\n');
    throw InputError(path + ": not valid UTF-8: byte " + std::to_string(bad) + " (line " + std::to_string(line) +
                     ", value 0x" +
                     [&] {
                       char hex[3];
                       std::snprintf(hex, sizeof hex, "%02X", static_cast<unsigned char>(text[bad]));
                       return std::string(hex);
                     }() +
                     ")");
  }
  const auto documents = split_documents(text);
  if (documents.empty()) throw InputError(path + ": no text (empty file, or only delimiter lines)");

  const models::Tokenizer tok = load_checkpoint_tokenizer(checkpoint_dir);
  const SpecialTokenRules rules = special_token_rules(checkpoint_dir, tok);
  if (documents.size() > 1 && rules.separator < 0)
    throw InputError(checkpoint_dir + ": " + std::to_string(documents.size()) + " documents in " + path +
                     " but no EOS token to join them (tokenizer_config.json eos_token, generation_config.json or "
                     "config.json eos_token_id)");
  const std::vector<int> stream = encode_documents(tok, rules, documents);
  if (vocab > 0)
    for (size_t i = 0; i < stream.size(); ++i)
      if (stream[i] >= vocab)
        throw InputError(checkpoint_dir + "/tokenizer.json: token '" + tok.id_to_token(stream[i]) + "' has id " +
                         std::to_string(stream[i]) + ", outside the model's vocabulary [0, " + std::to_string(vocab) +
                         ") (position " + std::to_string(i) + " of " + path + ")");

  const size_t total = stream.size();
  const size_t len = options.max_len > 0 ? static_cast<size_t>(options.max_len) : total;
  if (total < 2) throw InputError(path + ": " + std::to_string(total) + " token(s); a sequence needs at least 2");
  if (len > total)
    throw InputError(path + ": " + std::to_string(total) + " tokens, fewer than --max-len " + std::to_string(len));
  TokenBatch batch;
  const size_t rows = total / len;
  for (size_t r = 0; r < rows; ++r)
    batch.tokens.emplace_back(stream.begin() + static_cast<long>(r * len),
                              stream.begin() + static_cast<long>((r + 1) * len));
  batch.target.assign(rows, std::vector<int>(len, -1));
  const size_t dropped = total - rows * len;
  batch.description = "text " + path + " (" + std::to_string(documents.size()) + " document(s), " +
                      std::to_string(total) + " tokens; " + rules.description + ") as " + std::to_string(rows) + " × " +
                      std::to_string(len) +
                      (dropped ? ", last " + std::to_string(dropped) + " token(s) dropped" : std::string());
  return batch;
}

}  // namespace ess
