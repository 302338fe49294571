// Factories of the supported architectures (internal to libess/models).
#pragma once
#include "models/model.h"

namespace ess::models {

std::unique_ptr<CausalLM> make_mamba(const std::string& dir, const Config& c, bool falcon);
std::unique_ptr<CausalLM> make_mamba2(const std::string& dir, const Config& c);
std::unique_ptr<CausalLM> make_llama(const std::string& dir, const Config& c, bool mistral);
std::unique_ptr<CausalLM> make_gla(const std::string& dir, const Config& c);

// InputError unless tensor `name` exists with exactly `shape` (reads only the header).
void expect_tensor_shape(const Weights& W, const std::string& name, const std::vector<std::int64_t>& shape);

}  // namespace ess::models
