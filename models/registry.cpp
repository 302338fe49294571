// The architecture registry (filled by ESS_REGISTER_ARCHITECTURE in each models/<arch>.cpp) and
// what every model shares: choosing the architecture from config.json, token checks, run().
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <vector>

#include "libess/checked.h"
#include "libess/error.h"
#include "libess/memory.h"
#include "models/models.h"

namespace ess::models {

namespace {

struct Entry {
  ArchitectureFactory factory;
  std::vector<std::string> aliases;
};

std::map<std::string, Entry>& registry() {
  static std::map<std::string, Entry> r;  // constructed on first use: safe from static initializers
  return r;
}

}  // namespace

std::uint64_t forward_bytes_lower_bound(const WeightDecls& decls, int vocab, long long batch, long long seq_len,
                                        bool keep_logits) {
  const auto u = [](long long v) { return static_cast<std::uint64_t>(std::max(0LL, v)); };
  std::uint64_t hidden = 0, widest = 0, layer_weights = 0, embedding = 0;
  // One layer's weights: the largest layer (hybrids declare some tensors only in some layers).
  std::vector<std::uint64_t> per_layer(static_cast<size_t>(std::max(decls.num_layers(), 1)), 0);
  for (const auto& d : decls.list()) {
    if (!d.active) continue;
    std::uint64_t elements = 1;
    for (std::int64_t n : d.shape) elements = saturating_mul(elements, u(n));
    elements = saturating_mul(elements, u(d.items));
    if (d.per_layer) {
      for (size_t l = 0; l < per_layer.size(); ++l)
        if (d.declared_in(static_cast<int>(l))) per_layer[l] = saturating_add(per_layer[l], elements);
      for (std::int64_t n : d.shape) widest = std::max(widest, u(n));
    } else if (d.role == "embed" && d.shape.size() == 2) {
      hidden = u(d.shape[1]);
      embedding = elements;
    }
  }
  layer_weights = *std::max_element(per_layer.begin(), per_layer.end());
  if (hidden == 0) hidden = widest;
  const std::uint64_t tokens = saturating_mul(u(batch), u(seq_len));
  // The residual stream and its normed copy (2 × hidden) and the widest projection's output per
  // token; one sequence's L × V logits (every sequence's when they are kept); one layer's weights
  // and the embedding as float64.
  const std::uint64_t activations = saturating_mul(tokens, saturating_add(2 * hidden, widest));
  const std::uint64_t logits = saturating_mul(saturating_mul(keep_logits ? u(batch) : 1, u(seq_len)), u(vocab));
  return saturating_mul(8,
                        saturating_add(saturating_add(activations, logits), saturating_add(layer_weights, embedding)));
}

void check_forward_memory(const WeightDecls& decls, const std::string& architecture, int vocab, long long batch,
                          long long seq_len, bool keep_logits) {
  ess::check_memory(
      forward_bytes_lower_bound(decls, vocab, batch, seq_len, keep_logits),
      architecture + ": the forward pass over " + std::to_string(batch) + " × " + std::to_string(seq_len) + " tokens",
      "use fewer or shorter sequences");
}

bool register_architecture(const std::string& name, ArchitectureFactory factory, std::vector<std::string> aliases) {
  if (!registry().emplace(name, Entry{factory, std::move(aliases)}).second)
    throw std::logic_error("architecture '" + name + "' registered twice");
  return true;
}

std::vector<std::string> supported_architectures() {
  std::vector<std::string> out;
  for (const auto& [name, entry] : registry()) out.push_back(name);
  return out;
}

std::unique_ptr<CausalLM> open_causal_lm(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw InputError(dir + ": not a checkpoint directory");
  const std::string cfg_path = (fs::path(dir) / "config.json").string();
  if (!fs::exists(cfg_path, ec)) throw InputError(dir + ": no config.json in the checkpoint directory");
  const Config c(st::read_config_json(cfg_path), cfg_path);
  // architectures[0] names the class; model_type is the fallback. Either may be a registered alias.
  std::string arch;
  if (c.has("architectures") && c.json()["architectures"].is_array() && !c.json()["architectures"].empty() &&
      c.json()["architectures"][0].is_string())
    arch = c.json()["architectures"][0].get<std::string>();
  else if (c.has("model_type") && c.json()["model_type"].is_string())
    arch = c.json()["model_type"].get<std::string>();
  for (const auto& [name, entry] : registry()) {
    bool match = name == arch;
    for (const auto& a : entry.aliases) match = match || a == arch;
    if (!match) continue;
    auto model = entry.factory(dir, c);
    // Informational only (no architecture reads it), so a malformed value is ignored, not refused.
    const auto mp = c.json().find("max_position_embeddings");
    if (mp != c.json().end() && mp->is_number_integer() && mp->get<long long>() > 0)
      model->max_positions_ = mp->get<long long>();
    return model;
  }
  std::string list;
  for (const auto& a : supported_architectures()) list += (list.empty() ? "" : ", ") + a;
  throw InputError(cfg_path + ": architecture '" + (arch.empty() ? std::string("(none given)") : arch) +
                   "' is not supported (supported: " + list +
                   "); for other models export operators with "
                   "tools/python/ess_writer.py and use `ess compute`");
}

std::unique_ptr<CausalLM> load_causal_lm(const std::string& dir) {
  auto model = open_causal_lm(dir);
  model->weights().validate();
  return model;
}

ModelRun CausalLM::stream(const Tokens& tokens, const LayerCallback& on_layer, bool keep_logits) const {
  if (tokens.empty() || tokens[0].empty()) throw InputError(architecture_ + ": no tokens to run");
  for (size_t b = 0; b < tokens.size(); ++b) {
    if (tokens[b].size() != tokens[0].size())
      throw InputError(architecture_ + ": token sequences must all have the same length (sequence " +
                       std::to_string(b) + " has " + std::to_string(tokens[b].size()) + ", sequence 0 has " +
                       std::to_string(tokens[0].size()) + ")");
    for (size_t t = 0; t < tokens[b].size(); ++t)
      if (tokens[b][t] < 0 || tokens[b][t] >= vocab_)
        throw InputError(architecture_ + ": token id " + std::to_string(tokens[b][t]) + " at sequence " +
                         std::to_string(b) + ", position " + std::to_string(t) + " is outside the vocabulary [0, " +
                         std::to_string(vocab_) + ")");
  }
  check_forward_memory(W_.declarations(), architecture_, vocab_, static_cast<long long>(tokens.size()),
                       static_cast<long long>(tokens[0].size()), keep_logits);
  ModelRun out;
  out.inputs = &tokens;
  forward(tokens, on_layer, keep_logits, out);
  out.inputs = nullptr;
  if (out.argmax.size() != tokens.size() || out.logprobs.size() != tokens.size())
    throw std::logic_error(architecture_ + ": the forward pass gave predictions for " +
                           std::to_string(out.logprobs.size()) + " of " + std::to_string(tokens.size()) +
                           " sequences (it must end in finish_logits)");
  return out;
}

ModelRun CausalLM::run(const Tokens& tokens, bool keep_logits) const {
  std::vector<OperatorLayer> layers;
  ModelRun out = stream(
      tokens, [&](OperatorLayer&& layer) { layers.push_back(std::move(layer)); }, keep_logits);
  out.layers = std::move(layers);
  return out;
}

}  // namespace ess::models
