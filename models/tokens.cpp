#include "models/tokens.h"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <random>
#include <sstream>

#include "libess/error.h"
#include "libess/files.h"

namespace ess {

namespace {

// A word for a message: long ones shortened.
std::string quoted_word(const std::string& w) { return "'" + (w.size() > 40 ? w.substr(0, 37) + "..." : w) + "'"; }

}  // namespace

TokenBatch read_tokens_file(const std::string& path, int vocab) {
  // A regular file (never blocks on a FIFO; /dev/zero is refused), read in chunks, each line
  // bounded before it is stored.
  const InputFile file(path, "tokens file");
  TokenBatch batch;
  std::uint64_t total = 0;
  int lineno = 0;
  const auto parse_line = [&](const std::string& line) {
    ++lineno;
    std::vector<int> seq;
    std::size_t k = 0;
    while (k < line.size()) {
      while (k < line.size() && std::isspace(static_cast<unsigned char>(line[k]))) ++k;
      if (k == line.size()) break;
      std::size_t end = k;
      while (end < line.size() && !std::isspace(static_cast<unsigned char>(line[end]))) ++end;
      const std::string word = line.substr(k, end - k);
      k = end;
      long long v = 0;
      size_t used = 0;
      if (word.size() <= 20) {
        try {
          v = std::stoll(word, &used);
        } catch (...) {
          used = 0;
        }
      }
      if (used != word.size() || word.size() > 20)
        throw InputError(path + ":" + std::to_string(lineno) + ": " + quoted_word(word) + " is not a token id");
      if (v < 0 || v >= vocab)
        throw InputError(path + ":" + std::to_string(lineno) + ": token " + word + " at position " +
                         std::to_string(seq.size()) + " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
      seq.push_back(static_cast<int>(v));
    }
    if (seq.empty()) return;  // blank line
    if (!batch.tokens.empty() && seq.size() != batch.tokens[0].size())
      throw InputError(path + ":" + std::to_string(lineno) + ": " + std::to_string(seq.size()) +
                       " tokens, but the first sequence has " + std::to_string(batch.tokens[0].size()) +
                       " (all lines must have the same length)");
    if (batch.tokens.size() >= kMaxTokenSequences)
      throw InputError(path + ":" + std::to_string(lineno) + ": more than " + std::to_string(kMaxTokenSequences) +
                       " sequences");
    total += seq.size();
    if (total > kMaxTokens)
      throw InputError(path + ":" + std::to_string(lineno) + ": more than " + std::to_string(kMaxTokens) +
                       " tokens in all");
    batch.tokens.push_back(std::move(seq));
  };
  std::string line;
  std::vector<char> chunk(1 << 16);
  for (;;) {
    const std::size_t n = file.read_some(chunk.data(), chunk.size());
    for (std::size_t k = 0; k < n; ++k) {
      if (chunk[k] == '\n') {
        parse_line(line);
        line.clear();
        continue;
      }
      if (line.size() >= kMaxTokenLineBytes)
        throw InputError(path + ":" + std::to_string(lineno + 1) + ": line is longer than " +
                         std::to_string(kMaxTokenLineBytes) +
                         " bytes (a tokens file holds one sequence of whitespace-separated ids per line)");
      line += chunk[k];
    }
    if (n < chunk.size()) break;
  }
  if (!line.empty()) parse_line(line);
  if (batch.tokens.empty()) throw InputError(path + ": no token sequences");
  if (batch.tokens[0].size() < 2) throw InputError(path + ": sequences need at least 2 tokens");
  batch.target.assign(batch.tokens.size(), std::vector<int>(batch.tokens[0].size(), -1));
  batch.description = "tokens " + path + " (" + std::to_string(batch.tokens.size()) + " × " +
                      std::to_string(batch.tokens[0].size()) + ")";
  return batch;
}

MqarSpec parse_mqar(const std::string& spec) {
  MqarSpec m;
  std::stringstream in(spec);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item.empty()) continue;
    const auto eq = item.find('=');
    if (eq == std::string::npos) throw UsageError("--mqar: expected key=value, got '" + item + "'");
    const std::string k = item.substr(0, eq), v = item.substr(eq + 1);
    long value = 0;
    size_t used = 0;
    try {
      value = std::stol(v, &used);
    } catch (...) {
      used = 0;
    }
    if (used != v.size() || v.empty()) throw UsageError("--mqar: '" + v + "' is not an integer (in '" + item + "')");
    if (value < 0 || value > std::numeric_limits<int>::max())
      throw UsageError("--mqar: " + k + "=" + v + " is out of range [0, " +
                       std::to_string(std::numeric_limits<int>::max()) + "]");
    if (k == "kv")
      m.kv = static_cast<int>(value);
    else if (k == "len")
      m.len = static_cast<int>(value);
    else if (k == "n")
      m.n = static_cast<int>(value);
    else if (k == "seed")
      m.seed = static_cast<unsigned>(value);
    else if (k == "vocab")
      m.vocab = static_cast<int>(value);
    else
      throw UsageError("--mqar: unknown key '" + k + "' (known: kv, len, n, seed, vocab)");
  }
  if (m.kv < 1 || m.n < 1) throw UsageError("--mqar: kv and n must be ≥ 1");
  if (m.len < 2 * static_cast<long long>(m.kv) + 2)
    throw UsageError("--mqar: len must be ≥ 2·kv + 2 (context plus at least one query)");
  if (static_cast<std::uint64_t>(m.n) * static_cast<std::uint64_t>(m.len) > kMaxTokens)
    throw UsageError("--mqar: n × len = " + std::to_string(static_cast<std::uint64_t>(m.n) * m.len) +
                     " tokens, more than the " + std::to_string(kMaxTokens) + " accepted");
  return m;
}

TokenBatch make_mqar(const MqarSpec& s, int model_vocab) {
  const int V = s.vocab > 0 ? s.vocab : model_vocab;
  if (V > model_vocab)
    throw UsageError("--mqar vocab=" + std::to_string(V) + " exceeds the model's vocabulary (" +
                     std::to_string(model_vocab) + ")");
  if (V / 2 - 1 < s.kv)
    throw UsageError("--mqar: the lower half of a vocabulary of " + std::to_string(V) +
                     " holds fewer than kv=" + std::to_string(s.kv) + " distinct keys");
  std::mt19937 rng(s.seed);
  std::uniform_int_distribution<int> value_dist(V / 2, V - 1);
  TokenBatch batch;
  std::vector<int> pool;
  for (int k = 1; k < V / 2; ++k) pool.push_back(k);
  for (int b = 0; b < s.n; ++b) {
    std::shuffle(pool.begin(), pool.end(), rng);
    std::vector<int> keys(pool.begin(), pool.begin() + s.kv), values(s.kv);
    for (auto& v : values) v = value_dist(rng);
    std::vector<int> seq, tgt;
    for (int k = 0; k < s.kv; ++k) {
      seq.push_back(keys[k]);
      seq.push_back(values[k]);
    }
    tgt.assign(seq.size(), -1);
    std::uniform_int_distribution<int> pick(0, s.kv - 1);
    while (static_cast<int>(seq.size()) + 2 <= s.len) {
      const int k = pick(rng);
      seq.push_back(keys[k]);
      tgt.push_back(values[k]);  // at the key's position, the next token should be its value
      seq.push_back(values[k]);
      tgt.push_back(-1);
    }
    if (static_cast<int>(seq.size()) < s.len) {
      seq.push_back(keys[pick(rng)]);
      tgt.push_back(-1);
    }
    batch.tokens.push_back(std::move(seq));
    batch.target.push_back(std::move(tgt));
  }
  batch.description = "mqar kv=" + std::to_string(s.kv) + ",len=" + std::to_string(s.len) +
                      ",n=" + std::to_string(s.n) + ",seed=" + std::to_string(s.seed) + ",vocab=" + std::to_string(V);
  return batch;
}

double mqar_accuracy(const TokenBatch& batch, const std::vector<std::vector<int>>& argmax) {
  long total = 0, right = 0;
  for (size_t b = 0; b < batch.target.size(); ++b)
    for (size_t t = 0; t < batch.target[b].size(); ++t)
      if (batch.target[b][t] >= 0) {
        ++total;
        right += argmax[b][t] == batch.target[b][t];
      }
  return total ? static_cast<double>(right) / total : 0.0;
}

std::vector<int> blocks_at_tokens(const models::Tokens& tokens, const TokenWindows& at) {
  if (at.window < 0) throw UsageError({Option{"window"}, " must be ≥ 0"});
  std::vector<int> out;
  if (tokens.empty() || !at.active()) return out;
  const int L = static_cast<int>(tokens[0].size());
  std::vector<char> hit(static_cast<size_t>(L), 0);  // positions p holding one of the ids
  for (const auto& row : tokens)
    for (int p = 0; p < static_cast<int>(row.size()) && p < L; ++p)
      if (std::find(at.ids.begin(), at.ids.end(), row[p]) != at.ids.end()) hit[p] = 1;
  for (int i = 1; i < L; ++i) {
    const int lo = std::max(0, i - at.window), hi = std::min(L - 1, i + at.window);
    for (int p = lo; p <= hi; ++p)
      if (hit[p]) {
        out.push_back(i);
        break;
      }
  }
  return out;
}

std::string indices_at_tokens(const models::Tokens& tokens, const TokenWindows& at) {
  const std::vector<int> blocks = blocks_at_tokens(tokens, at);
  if (blocks.empty())
    throw UsageError({Option{"at_tokens"}, ": none of these token ids occurs in the input (no block to measure)"});
  std::string spec;
  for (int i : blocks) spec += (spec.empty() ? "" : ",") + std::to_string(i);
  if (blocks.size() == 1) spec += "," + spec;  // a list, not the one-block range "i" (same block)
  return spec;
}

std::vector<int> parse_token_ids(const std::string& spec) {
  std::vector<int> ids;
  size_t start = 0;
  while (start <= spec.size()) {
    const size_t end = std::min(spec.find(',', start), spec.size());
    const std::string item = spec.substr(start, end - start);
    char* stop = nullptr;
    const long v = item.empty() ? -1 : std::strtol(item.c_str(), &stop, 10);
    if (item.empty() || *stop != '\0' || v < 0 || v > std::numeric_limits<int>::max())
      throw UsageError({"bad ", Option{"at_tokens"}, " '" + spec + "' (expected token ids ID[,ID…], each ≥ 0)"});
    ids.push_back(static_cast<int>(v));
    start = end + 1;
  }
  return ids;
}

}  // namespace ess
