#include "libess/results_io.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "libess/checked.h"
#include "libess/error.h"
#include "libess/hdf5.h"
#include "libess/memory.h"
#include "libess/tensor.h"

namespace ess {

namespace {

std::string group_name(const std::string& name) {
  std::string g = name;
  std::replace(g.begin(), g.end(), '/', '.');
  return g.empty() ? "layer" : g;
}

void write_layer(const h5::Object& layers_group, const LayerResult& R) {
  const h5::Object g = layers_group.create_group(group_name(R.name));
  g.set_attr("name", R.name);
  g.set_attr("family", R.family);
  g.set_attr("layer_index", R.layer_index);
  g.set_attr("channel_kind", std::string(to_string(R.channel_kind)));
  if (R.head_dim > 0) g.set_attr("head_dim", R.head_dim);
  g.set_attr("seq_len", R.seq_len);
  g.set_attr("engine", R.engine);
  g.set_attr("tol", R.tol);
  g.set_attr("tol_mode", std::string(to_string(R.tol_mode)));
  g.set_attr("sweep_rtol", R.sweep_rtol);
  g.set_attr("seconds", R.seconds);
  const std::int64_t B = R.batch, C = R.channels, I = R.num_indices();
  const size_t n = static_cast<size_t>(B * C * I);
  auto require = [&](const char* what, size_t got, size_t want) {
    if (got != want)
      throw std::invalid_argument("results writer: layer '" + R.name + "': " + what + " has " + std::to_string(got) +
                                  " values, expected " + std::to_string(want));
  };
  require("tolerance_ess", R.tolerance_ess.size(), n);
  require("entropy_ess", R.entropy_ess.size(), n);
  require("tss", R.tss.size(), I);
  g.write("tolerance_ess", {B, C, I}, R.tolerance_ess.data());
  g.write("entropy_ess", {B, C, I}, R.entropy_ess.data());
  g.write("tss", {I}, R.tss.data());
  g.write("indices", {I}, R.indices.data());
  // Optional datasets: written when present (a LayerResult built by hand may leave them empty).
  if (!R.attainable.empty())
    require("attainable", R.attainable.size(), I), g.write("attainable", {I}, R.attainable.data());
  if (!R.frobenius.empty())
    require("frobenius", R.frobenius.size(), n), g.write("frobenius_norm", {B, C, I}, R.frobenius.data());
  if (!R.error_bound.empty())
    require("error_bound", R.error_bound.size(), n), g.write("error_bound", {B, C, I}, R.error_bound.data());
  if (!R.status.empty()) require("status", R.status.size(), n), g.write("status", {B, C, I}, R.status.data());
  if (!R.layer_sigma_max.empty())
    require("layer_sigma_max", R.layer_sigma_max.size(), B), g.write("layer_sigma_max", {B}, R.layer_sigma_max.data());
  // Lanczos engine: certified entropy-ESS interval and the number of σ computed per block.
  if (!R.entropy_ess_lower.empty()) {
    require("entropy_ess_lower", R.entropy_ess_lower.size(), n);
    require("entropy_ess_upper", R.entropy_ess_upper.size(), n);
    g.write("entropy_ess_lower", {B, C, I}, R.entropy_ess_lower.data());
    g.write("entropy_ess_upper", {B, C, I}, R.entropy_ess_upper.data());
  }
  if (!R.sigma_count.empty())
    require("sigma_count", R.sigma_count.size(), n), g.write("sigma_count", {B, C, I}, R.sigma_count.data());
  if (R.sigma_k > 0) {
    require("sigma", R.sigma.size(), n * R.sigma_k);
    require("sigma_tail", R.sigma_tail.size(), n);
    g.write("sigma", {B, C, I, R.sigma_k}, R.sigma.data());
    g.write("sigma_tail", {B, C, I}, R.sigma_tail.data());
  }
  write_students(g, R.students, static_cast<int>(I));  // /students, when measured
}

}  // namespace

ResultsWriter::ResultsWriter(const std::string& path, const std::string& command_line, int deflate)
    : path_(path), command_line_(command_line), out_(std::make_unique<h5::OutputFile>(path, deflate)) {
  out_->root().create_group("layers");
}

ResultsWriter::~ResultsWriter() = default;  // h5::OutputFile (built in memory) writes nothing unless committed

void ResultsWriter::write(const LayerResult& result) {
  if (!out_) throw std::logic_error("results writer: " + path_ + " is already committed");
  write_layer(out_->root().group("layers"), result);
  ++layers_;
}

void set_loss(Predictions& p) {
  double sum = 0;
  for (int b = 0; b < p.batch; ++b)
    for (int t = 0; t + 1 < p.seq_len; ++t) sum += p.logprobs[p.at(b, t)];
  const long n = p.scored();
  p.loss = n > 0 ? -sum / static_cast<double>(n) : std::numeric_limits<double>::quiet_NaN();
  p.perplexity = std::exp(p.loss);
}

void ResultsWriter::write_predictions(const Predictions& p) {
  if (!out_) throw std::logic_error("results writer: " + path_ + " is already committed");
  const size_t n = static_cast<size_t>(p.batch) * static_cast<size_t>(p.seq_len);
  if (p.batch <= 0 || p.seq_len <= 0 || p.input_ids.size() != n || p.argmax.size() != n || p.logprobs.size() != n)
    throw std::invalid_argument("results writer: predictions of " + std::to_string(p.input_ids.size()) + "/" +
                                std::to_string(p.argmax.size()) + "/" + std::to_string(p.logprobs.size()) +
                                " values for B = " + std::to_string(p.batch) + ", L = " + std::to_string(p.seq_len));
  const h5::Object g = out_->root().create_group("model");
  const std::vector<std::int64_t> shape{p.batch, p.seq_len};
  g.write("input_ids", shape, p.input_ids.data());
  g.write("argmax", shape, p.argmax.data());
  g.write("logprobs", shape, p.logprobs.data());
  g.set_attr("vocab_size", p.vocab_size);
  g.set_attr("loss", p.loss);
  g.set_attr("perplexity", p.perplexity);
  g.set_attr("scored_tokens", static_cast<long long>(p.scored()));
}

void ResultsWriter::commit(const Provenance& provenance) {
  if (!out_) throw std::logic_error("results writer: " + path_ + " is already committed");
  const h5::Object& root = out_->root();
  h5::write_provenance(root, "ess-results", kResultsFormatMajor, kResultsFormatMinor, command_line_);
  root.set_attr("source", provenance.source);
  root.set_attr("source_sha256", provenance.source_sha256);
  root.set_attr("input", provenance.input);
  if (!provenance.architecture.empty()) root.set_attr("architecture", provenance.architecture);
  if (provenance.mqar_accuracy >= 0) root.set_attr("mqar_accuracy", provenance.mqar_accuracy);
  if (!provenance.block_selection.empty()) root.set_attr("block_selection", provenance.block_selection);
  out_->commit();
  out_.reset();
}

void write_results(const std::string& path, const std::vector<LayerResult>& layers, const Provenance& provenance,
                   const std::string& command_line, int deflate) {
  ResultsWriter writer(path, command_line, deflate);
  for (const LayerResult& R : layers) writer.write(R);
  writer.commit(provenance);
}

namespace {

void expect_shape(const h5::Object& g, const std::string& ds, const std::vector<std::int64_t>& got,
                  const std::vector<std::int64_t>& want) {
  if (got != want) throw InputError(g.where(ds) + ": shape " + shape_string(got) + ", expected " + shape_string(want));
}

// A results file is read into memory whole, and a few kB of HDF5 can declare many large datasets
// (unallocated chunks read as their fill value; several groups can link one dataset). Each read
// is checked on its own by h5::Object; this checks the running total of everything read so far,
// before each read, so such a file is refused instead of growing the process without bound.
class ReadTally {
 public:
  explicit ReadTally(std::string path) : path_(std::move(path)) {}
  // Counts `dataset` (elements × `element_bytes`) and refuses when the total exceeds the limit.
  void reserve(const h5::Object& g, const std::string& dataset, std::uint64_t element_bytes) {
    if (!g.has(dataset)) return;  // the read itself reports the missing dataset
    // h5::Object::shape refuses shapes whose count passes 2^63, so the count is always there.
    const std::uint64_t elements = element_count(g.shape(dataset)).value_or(kUnlimitedMemory);
    held_ = saturating_add(held_, saturating_mul(elements, element_bytes));
    check_memory(held_, path_ + ": the results read so far, up to " + g.where(dataset),
                 "the file declares more data in all than this process may use");
  }
  // Every dataset directly in `g` (the /students group), counted as 8-byte values.
  void reserve_all(const h5::Object& g) {
    for (const std::string& name : g.children())
      if (!g.is_group(name)) reserve(g, name, 8);
  }
  std::vector<double> read_double(const h5::Object& g, const std::string& ds, std::vector<std::int64_t>* shape) {
    reserve(g, ds, sizeof(double));
    return g.read_double(ds, shape);
  }
  std::vector<std::int32_t> read_int32(const h5::Object& g, const std::string& ds, std::vector<std::int64_t>* shape) {
    reserve(g, ds, sizeof(std::int32_t));
    return g.read_int32(ds, shape);
  }
  std::vector<std::uint8_t> read_uint8(const h5::Object& g, const std::string& ds, std::vector<std::int64_t>* shape) {
    reserve(g, ds, sizeof(std::uint8_t));
    return g.read_uint8(ds, shape);
  }

 private:
  std::string path_;
  std::uint64_t held_ = 0;
};

LayerResult read_layer(const h5::Object& g, ReadTally& tally) {
  LayerResult R;
  R.name = g.has_attr("name") ? g.attr_string("name") : g.path().substr(g.path().rfind('/') + 1);
  R.family = g.attr_string("family");
  R.layer_index = static_cast<int>(g.attr_int_in_range("layer_index", 0, std::numeric_limits<int>::max()));
  const std::string kind = g.attr_string("channel_kind");
  if (kind != "head" && kind != "channel")
    throw InputError(g.where() + ": channel_kind '" + kind + "' (expected head or channel)");
  R.channel_kind = kind == "head" ? ChannelKind::head : ChannelKind::channel;
  if (g.has_attr("head_dim"))
    R.head_dim = static_cast<int>(g.attr_int_in_range("head_dim", 1, std::numeric_limits<int>::max()));
  R.seq_len = static_cast<int>(g.attr_int_in_range("seq_len", 2, std::numeric_limits<int>::max()));
  R.engine = g.attr_string("engine");
  R.tol = g.attr_double("tol");
  try {
    R.tol_mode = parse_tol_mode(g.attr_string("tol_mode"));
  } catch (const UsageError&) {
    throw InputError(g.where() + ": unknown tol_mode '" + g.attr_string("tol_mode") + "'");
  }
  if (g.has_attr("sweep_rtol")) R.sweep_rtol = g.attr_double("sweep_rtol");
  if (g.has_attr("seconds")) R.seconds = g.attr_double("seconds");

  std::vector<std::int64_t> shape;
  R.tolerance_ess = tally.read_int32(g, "tolerance_ess", &shape);
  if (shape.size() != 3)
    throw InputError(g.where("tolerance_ess") + ": expected 3 dimensions [B, C, I], got " + shape_string(shape));
  const std::int64_t B = shape[0], C = shape[1], I = shape[2];
  if (B > std::numeric_limits<int>::max() || C > std::numeric_limits<int>::max() || I >= R.seq_len)
    throw InputError(g.where("tolerance_ess") + ": shape " + shape_string(shape) +
                     " is out of range (batch and channels ≤ 2^31 − 1, fewer blocks than seq_len)");
  R.batch = static_cast<int>(B);
  R.channels = static_cast<int>(C);
  R.entropy_ess = tally.read_double(g, "entropy_ess", &shape);
  expect_shape(g, "entropy_ess", shape, {B, C, I});
  R.tss = tally.read_int32(g, "tss", &shape);
  expect_shape(g, "tss", shape, {I});
  R.indices = tally.read_int32(g, "indices", &shape);
  expect_shape(g, "indices", shape, {I});
  for (int i : R.indices)
    if (i < 1 || i >= R.seq_len)
      throw InputError(g.where("indices") + ": block index " + std::to_string(i) + " outside 1.." +
                       std::to_string(R.seq_len - 1));
  if (g.has("attainable")) {
    R.attainable = tally.read_int32(g, "attainable", &shape);
    expect_shape(g, "attainable", shape, {I});
  } else {
    for (std::int64_t p = 0; p < I; ++p)
      R.attainable.push_back(std::min(R.tss[p], std::min(R.indices[p], R.seq_len - R.indices[p])));
  }
  auto optional_bci = [&](const std::string& ds, std::vector<double>& out) {
    if (!g.has(ds)) return;
    out = tally.read_double(g, ds, &shape);
    expect_shape(g, ds, shape, {B, C, I});
  };
  optional_bci("frobenius_norm", R.frobenius);
  optional_bci("error_bound", R.error_bound);
  optional_bci("sigma_tail", R.sigma_tail);
  optional_bci("entropy_ess_lower", R.entropy_ess_lower);
  optional_bci("entropy_ess_upper", R.entropy_ess_upper);
  if (R.entropy_ess_lower.empty() != R.entropy_ess_upper.empty())
    throw InputError(g.where(R.entropy_ess_lower.empty() ? "entropy_ess_upper" : "entropy_ess_lower") +
                     ": present without its other end (entropy_ess_lower and entropy_ess_upper come together)");
  if (g.has("sigma_count")) {
    R.sigma_count = tally.read_int32(g, "sigma_count", &shape);
    expect_shape(g, "sigma_count", shape, {B, C, I});
  }
  if (g.has("status")) {
    R.status = tally.read_uint8(g, "status", &shape);
    expect_shape(g, "status", shape, {B, C, I});
  }
  if (g.has("layer_sigma_max")) {
    R.layer_sigma_max = tally.read_double(g, "layer_sigma_max", &shape);
    expect_shape(g, "layer_sigma_max", shape, {B});
  }
  if (g.has("sigma")) {
    auto sigma = tally.read_double(g, "sigma", &shape);
    if (shape.size() != 4 || shape[0] != B || shape[1] != C || shape[2] != I || shape[3] > (1 << 20))
      throw InputError(g.where("sigma") + ": shape " + shape_string(shape) + ", expected [" + std::to_string(B) + ", " +
                       std::to_string(C) + ", " + std::to_string(I) + ", K]");
    R.sigma_k = static_cast<int>(shape[3]);
    R.sigma.assign(sigma.begin(), sigma.end());
    for (float v : R.sigma)
      if (!std::isfinite(v) || v < 0) throw InputError(g.where("sigma") + ": contains negative or non-finite values");
  }
  if (g.has("students") && g.is_group("students")) tally.reserve_all(g.group("students"));
  R.students = read_students(g, R.batch, R.channels, static_cast<int>(I));  // empty when absent
  return R;
}

Predictions read_predictions(const h5::Object& g, ReadTally& tally) {
  Predictions p;
  std::vector<std::int64_t> shape;
  p.input_ids = tally.read_int32(g, "input_ids", &shape);
  if (shape.size() != 2 || shape[0] < 1 || shape[1] < 1)
    throw InputError(g.where("input_ids") + ": shape " + shape_string(shape) + ", expected [B, L]");
  const std::int64_t B = shape[0], L = shape[1];
  p.batch = static_cast<int>(B);
  p.seq_len = static_cast<int>(L);
  p.argmax = tally.read_int32(g, "argmax", &shape);
  expect_shape(g, "argmax", shape, {B, L});
  p.logprobs = tally.read_double(g, "logprobs", &shape);
  expect_shape(g, "logprobs", shape, {B, L});
  p.vocab_size = g.has_attr("vocab_size") ? static_cast<int>(g.attr_int("vocab_size")) : 0;
  for (size_t k = 0; k < p.input_ids.size(); ++k) {
    const int lim = p.vocab_size > 0 ? p.vocab_size : std::numeric_limits<int>::max();
    if (p.input_ids[k] < 0 || p.input_ids[k] >= lim || p.argmax[k] < 0 || p.argmax[k] >= lim)
      throw InputError(g.where(p.input_ids[k] < 0 || p.input_ids[k] >= lim ? "input_ids" : "argmax") +
                       ": token id outside [0, " + std::to_string(lim) + ") at [" + std::to_string(k / L) + ", " +
                       std::to_string(k % L) + "]");
  }
  for (int b = 0; b < p.batch; ++b)
    for (int t = 0; t + 1 < p.seq_len; ++t) {
      const double v = p.logprobs[p.at(b, t)];
      if (!(v <= 1e-12))  // a log-probability: ≤ 0 (tiny positive rounding allowed), not NaN
        throw InputError(g.where("logprobs") + ": value " + std::to_string(v) + " at [" + std::to_string(b) + ", " +
                         std::to_string(t) + "] is not a log-probability");
    }
  set_loss(p);  // recomputed from the data rather than trusted from the attributes
  return p;
}

}  // namespace

ResultsFile read_results(const std::string& path) {
  h5::Object root = h5::open_file(path);
  h5::check_format(root, "ess-results", kResultsFormatMajor);
  ResultsFile f;
  f.path = path;
  if (root.has_attr("creator")) f.creator = root.attr_string("creator");
  if (root.has_attr("created")) f.created = root.attr_string("created");
  if (root.has_attr("command_line")) f.command_line = root.attr_string("command_line");
  if (root.has_attr("source")) f.provenance.source = root.attr_string("source");
  if (root.has_attr("source_sha256")) f.provenance.source_sha256 = root.attr_string("source_sha256");
  if (root.has_attr("input")) f.provenance.input = root.attr_string("input");
  if (root.has_attr("architecture")) f.provenance.architecture = root.attr_string("architecture");
  if (root.has_attr("mqar_accuracy")) f.provenance.mqar_accuracy = root.attr_double("mqar_accuracy");
  if (root.has_attr("block_selection")) f.provenance.block_selection = root.attr_string("block_selection");
  if (!root.has("layers")) throw InputError(path + ": no /layers group");
  const h5::Object layers = root.group("layers");
  ReadTally tally(path);
  for (const std::string& name : layers.children()) f.layers.push_back(read_layer(layers.group(name), tally));
  if (f.layers.empty()) throw InputError(path + ": /layers is empty");
  if (root.has("model")) f.predictions = read_predictions(root.group("model"), tally);
  std::stable_sort(f.layers.begin(), f.layers.end(),
                   [](const LayerResult& a, const LayerResult& b) { return a.layer_index < b.layer_index; });
  return f;
}

}  // namespace ess
