#include "tools/ess/inspect_checkpoint.h"

#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <set>

#include "libess/error.h"
#include "libess/tensor.h"
#include "models/model.h"
#include "models/safetensors.h"
#include "models/text_input.h"
#include "tools/ess/cli.h"

namespace ess::cli {

int inspect_safetensors_file(const std::string& path) {
  st::SafetensorsFile f(path);
  const auto names = f.names();
  std::cout << path << ": safetensors file, " << names.size() << " tensor(s)\n";
  for (const auto& [k, v] : f.metadata()) std::cout << "  @" << k << " = " << v << "\n";
  Table table({{"tensor"}, {"dtype"}, {"shape"}});
  for (const auto& n : names) {
    const auto& info = f.info(n);
    table.add({n, info.dtype, shape_string(info.shape)});
  }
  table.print(std::cout, false, "  ");
  return 0;
}

namespace {

// The architecture's declared weights, one line per declaration (its layers and items together),
// then every problem with its message. Returns the undeclared tensor names.
std::set<std::string> print_declared_weights(const models::CausalLM& model) {
  using State = models::WeightCheck::State;
  const auto checks = model.weights().check();
  std::map<const models::WeightDecl*, std::vector<const models::WeightCheck*>> by_decl;
  std::map<State, int> count;
  for (const auto& c : checks) {
    by_decl[c.decl].push_back(&c);
    ++count[c.state];
  }
  const auto undeclared = model.weights().undeclared();
  std::cout << "  architecture " << model.architecture() << ": " << model.weights().declarations().list().size()
            << " declared weights over " << model.num_layers() << " layer(s); " << count[State::ok] << " present, "
            << count[State::off] << " off, " << count[State::missing] << " missing, " << count[State::wrong_shape]
            << " misshapen, " << count[State::wrong_dtype] << " of an unsupported dtype; " << undeclared.size()
            << " checkpoint tensor(s) not declared\n";
  auto names = [](const models::WeightDecl& d) {
    std::string s = d.names[0];
    for (size_t k = 1; k < d.names.size(); ++k) s += " | " + d.names[k];
    return s;
  };
  Table table({{"role"}, {"name"}, {"shape"}, {"status"}});
  for (const auto& d : model.weights().declarations().list()) {
    const auto& cs = by_decl[&d];
    std::map<State, int> n;
    for (const auto* c : cs) ++n[c->state];
    std::string status;
    for (const auto& [state, k] : n)
      status += (status.empty() ? "" : ", ") + std::string(models::to_string(state)) +
                (n.size() > 1 || cs.size() > 1 ? " ×" + std::to_string(k) : "");
    if (!d.condition.empty()) status += " (" + d.condition + ")";
    table.add({d.role, names(d), shape_string(d.shape), status});
  }
  table.print(std::cout, false, "    ");
  for (const auto& c : checks)
    if (c.problem()) std::cout << "    " << models::to_string(c.state) << ": " << c.message << "\n";
  return {undeclared.begin(), undeclared.end()};
}

}  // namespace

int inspect_checkpoint_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  const std::string config_path = (fs::path(dir) / "config.json").string();
  std::cout << dir << ": checkpoint directory\n";
  std::set<std::string> undeclared;
  bool declared = false;
  if (fs::exists(config_path)) {
    auto config = st::read_config_json(config_path);
    std::cout << "  config.json:\n";
    for (auto it = config.begin(); it != config.end(); ++it) {
      std::string v = it.value().dump();
      if (v.size() > 100) v = v.substr(0, 97) + "...";
      std::cout << "    " << it.key() << " = " << v << "\n";
    }
    std::unique_ptr<models::CausalLM> model;
    try {
      model = models::open_causal_lm(dir);
    } catch (const InputError& e) {  // unsupported or bad config: still list the tensors
      std::cout << "  architecture: " << e.what() << "\n";
    }
    if (model) {
      undeclared = print_declared_weights(*model);
      declared = true;
    }
  } else {
    std::cout << "  (no config.json)\n";
  }
  if (fs::exists(fs::path(dir) / "tokenizer.json")) {  // what `analyze --text` would use
    try {
      const auto tok = load_checkpoint_tokenizer(dir);
      std::cout << "  tokenizer.json: " << tok.summary() << "\n    " << special_token_rules(dir, tok).description
                << "\n";
    } catch (const InputError& e) {
      std::cout << "  tokenizer.json: not usable for --text: " << e.what() << "\n";
    }
  } else {
    std::cout << "  (no tokenizer.json: --text is not available)\n";
  }
  st::Checkpoint ckpt(dir);
  const auto names = ckpt.names();
  std::cout << "  " << names.size() << " tensor(s):\n";
  Table table({{"tensor"}, {"dtype"}, {"shape"}, {"file"}});
  for (const auto& n : names) {
    const auto& info = ckpt.info(n);
    table.add({n, info.dtype, shape_string(info.shape),
               fs::path(info.file).filename().string() + (declared && undeclared.count(n) ? "  not declared" : "")});
  }
  table.print(std::cout, false, "    ");
  return 0;
}

}  // namespace ess::cli
