// The compute pipeline on hand-checked operators: every threshold mode, zero blocks, engines
// agreeing through compute_layer, and the results file round trip.
#include <doctest/doctest.h>
#include <hdf5.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "analysis/summary.h"
#include "libess/compute.h"
#include "libess/error.h"
#include "libess/hdf5.h"
#include "libess/results_io.h"
#include "test_helpers.h"

using namespace ess;

namespace {

// Channel 0: T[1,0] = 3, T[2,0] = 4, all else 0 → H_1 = [3;4;0] (σ 5), H_2 = [[4,0],[0,0]] (σ 4),
// H_3 = zero block. Channel 1 is channel 0 scaled by 0.1.
OperatorLayer hand_checked_layer() {
  Matrix T = Matrix::Zero(4, 4);
  T(1, 0) = 3;
  T(2, 0) = 4;
  OperatorLayer layer;
  layer.name = "hand";
  layer.layer_index = 0;
  layer.op = std::make_unique<ess::test::ExplicitOperator>(1, 2, std::vector<Matrix>{T, 0.1 * T});
  return layer;
}

std::vector<int> tol_ess(const LayerResult& R, int c) {
  std::vector<int> v;
  for (int p = 0; p < R.num_indices(); ++p) v.push_back(R.tolerance_ess[R.at(0, c, p)]);
  return v;
}

}  // namespace

TEST_CASE("compute_layer: hand-checked tolerance-ESS in absolute, block and layer modes") {
  auto layer = hand_checked_layer();
  EssOptions o;
  o.engine = EngineKind::dense;
  o.threads = 2;

  o.tol = 4.5;
  o.tol_mode = TolMode::absolute;
  auto R = compute_layer(layer, o);
  CHECK(tol_ess(R, 0) == std::vector<int>{1, 0, 0});
  CHECK(tol_ess(R, 1) == std::vector<int>{0, 0, 0});

  o.tol = 0.5;
  o.tol_mode = TolMode::block;
  R = compute_layer(layer, o);
  CHECK(tol_ess(R, 0) == std::vector<int>{1, 1, 0});  // relative to each block's own σ_1
  CHECK(tol_ess(R, 1) == std::vector<int>{1, 1, 0});

  o.tol = 0.9;
  o.tol_mode = TolMode::layer;  // threshold 0.9 · 5 = 4.5 for both channels
  R = compute_layer(layer, o);
  CHECK(R.layer_sigma_max[0] == doctest::Approx(5.0));
  CHECK(tol_ess(R, 0) == std::vector<int>{1, 0, 0});
  CHECK(tol_ess(R, 1) == std::vector<int>{0, 0, 0});

  o.tol = 0.07;  // threshold 0.35: channel 1 has σ 0.5 and 0.4
  R = compute_layer(layer, o);
  CHECK(tol_ess(R, 1) == std::vector<int>{1, 1, 0});

  // entropy-ESS: single non-zero σ → 1, zero block → 0.
  for (int c = 0; c < 2; ++c) {
    CHECK(R.entropy_ess[R.at(0, c, 0)] == doctest::Approx(1.0));
    CHECK(R.entropy_ess[R.at(0, c, 1)] == doctest::Approx(1.0));
    CHECK(R.entropy_ess[R.at(0, c, 2)] == 0.0);
  }
  // TSS of a dense operator is i; attainable bound min(TSS_i, i, L − i).
  CHECK(R.tss == std::vector<int>{1, 2, 3});
  CHECK(R.attainable == std::vector<int>{1, 2, 1});
}

TEST_CASE("compute_layer: every engine gives the same ESS on a random operator") {
  std::mt19937 rng(31);
  const int L = 36;
  std::vector<Matrix> Ts;
  for (int c = 0; c < 3; ++c) {
    Matrix a(3, 1);
    a << 0.9, 0.7, 0.5;
    DiagonalRealization r(a, ess::test::random_matrix(rng, 3, L), ess::test::random_matrix(rng, 3, L));
    Ts.push_back(materialize(r));
  }
  OperatorLayer layer;
  layer.name = "rand";
  layer.op = std::make_unique<ess::test::ExplicitOperator>(1, 3, Ts);
  EssOptions o;
  o.tol = 1e-2;
  o.keep_sigma = 4;
  o.engine = EngineKind::dense;
  auto dense = compute_layer(layer, o);
  o.engine = EngineKind::sweep;
  auto sweep = compute_layer(layer, o);
  CHECK(sweep.engine == "sweep");
  CHECK(dense.tolerance_ess == sweep.tolerance_ess);
  for (size_t k = 0; k < dense.entropy_ess.size(); ++k)
    CHECK(sweep.entropy_ess[k] == doctest::Approx(dense.entropy_ess[k]).epsilon(1e-8));
  for (size_t k = 0; k < dense.sigma.size(); ++k)
    CHECK(sweep.sigma[k] == doctest::Approx(dense.sigma[k]).epsilon(1e-6));
  // An operator without a realization refuses the structured engine with a usage error.
  o.engine = EngineKind::structured;
  CHECK_THROWS_AS(compute_layer(layer, o), UsageError);
}

TEST_CASE("results file round trip keeps every dataset and attribute") {
  auto layer = hand_checked_layer();
  EssOptions o;
  o.keep_sigma = 2;
  o.tol_mode = TolMode::block;
  auto R = compute_layer(layer, o);
  const std::string dir = ess::test::temp_dir("results");
  const std::string path = dir + "/r.h5";
  write_results(path, {R}, Provenance{"ops.h5", "abc", "operator file", "", -1, "indices=1:3"}, "ess compute test");
  auto F = read_results(path);
  REQUIRE(F.layers.size() == 1);
  const auto& Q = F.layers[0];
  CHECK(Q.name == "hand");
  CHECK(Q.family == "dense");
  CHECK(Q.engine == R.engine);
  CHECK(Q.tol_mode == TolMode::block);
  CHECK(Q.tolerance_ess == R.tolerance_ess);
  CHECK(Q.entropy_ess == R.entropy_ess);
  CHECK(Q.indices == R.indices);
  CHECK(Q.tss == R.tss);
  CHECK(Q.sigma_k == 2);
  CHECK(Q.sigma == R.sigma);
  CHECK(F.provenance.source == "ops.h5");
  CHECK(F.provenance.block_selection == "indices=1:3");
  CHECK(F.command_line == "ess compute test");
  // No temporary files are left next to the output.
  int files = 0;
  for (auto& e : std::filesystem::directory_iterator(dir)) files += e.is_regular_file();
  CHECK(files == 1);
  std::filesystem::remove_all(dir);
}

TEST_CASE(
    "large datasets: shuffled and deflated at the object's level, or stored plain, with the same values either way") {
  const std::string dir = ess::test::temp_dir("deflate");
  // Over 16384 elements (the chunking threshold) of every written type, 3 × 6001 so that the last
  // chunk is partial; values with structure (a profile-like ramp plus noise) and without.
  const std::vector<std::int64_t> shape{3, 6001};
  const size_t n = 3 * 6001;
  std::mt19937 rng(5);
  std::normal_distribution<double> noise(0.0, 1.0);
  std::vector<double> d(n);
  std::vector<float> f(n);
  std::vector<std::int32_t> i32(n);
  std::vector<std::uint8_t> u8(n);
  for (size_t k = 0; k < n; ++k) {
    d[k] = 5.0 + 1e-3 * static_cast<double>(k % 1000) + 1e-6 * noise(rng);
    f[k] = static_cast<float>(noise(rng));
    i32[k] = static_cast<std::int32_t>(k % 97);
    u8[k] = static_cast<std::uint8_t>(k % 3 == 0);
  }
  auto write = [&](const std::string& name, int level) {
    h5::OutputFile out(dir + "/" + name, level);
    auto g = out.root().create_group("a/b");  // a group made from the root inherits its level
    g.write("d", shape, d.data());
    g.write("f", shape, f.data());
    g.write("i", shape, i32.data());
    g.write("u", shape, u8.data());
    out.commit();
  };
  // The filters on each dataset, in order, with deflate's level.
  auto filters = [&](const std::string& name) {
    std::vector<std::string> out;
    const hid_t file = H5Fopen((dir + "/" + name).c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    REQUIRE(file >= 0);
    for (const char* ds : {"/a/b/d", "/a/b/f", "/a/b/i", "/a/b/u"}) {
      const hid_t set = H5Dopen2(file, ds, H5P_DEFAULT);
      const hid_t dcpl = H5Dget_create_plist(set);
      std::string list;
      for (int k = 0; k < H5Pget_nfilters(dcpl); ++k) {
        unsigned flags = 0, values[4] = {0, 0, 0, 0};
        size_t nv = 4;
        const H5Z_filter_t id =
            H5Pget_filter2(dcpl, static_cast<unsigned>(k), &flags, &nv, values, 0, nullptr, nullptr);
        if (id == H5Z_FILTER_SHUFFLE)
          list += "shuffle ";
        else if (id == H5Z_FILTER_DEFLATE)
          list += "deflate" + std::to_string(values[0]) + " ";
        else
          list += "other ";
      }
      out.push_back(list);
      H5Pclose(dcpl);
      H5Dclose(set);
    }
    H5Fclose(file);
    return out;
  };
  write("default.h5", h5::kDefaultDeflate);
  write("plain.h5", 0);
  write("level6.h5", 6);
  const std::string dflt = "shuffle deflate" + std::to_string(h5::kDefaultDeflate) + " ";
  CHECK(filters("default.h5") == std::vector<std::string>(4, dflt));
  CHECK(filters("plain.h5") == std::vector<std::string>(4, ""));
  CHECK(filters("level6.h5") == std::vector<std::string>(4, "shuffle deflate6 "));
  for (const char* name : {"default.h5", "plain.h5", "level6.h5"}) {
    CAPTURE(name);
    const auto g = h5::open_file(dir + "/" + name).group("a").group("b");
    std::vector<std::int64_t> got;
    CHECK(g.read_double("d", &got) == d);
    CHECK(got == shape);
    const auto fr = g.read_double("f");
    bool same = fr.size() == n;
    for (size_t k = 0; same && k < n; ++k) same = fr[k] == static_cast<double>(f[k]);
    CHECK(same);
    CHECK(g.read_int32("i") == i32);
    CHECK(g.read_uint8("u") == u8);
  }
  // The plain file holds every byte (≈ 18k × 17 bytes); the compressed one is smaller.
  const auto plain = std::filesystem::file_size(dir + "/plain.h5");
  const auto packed = std::filesystem::file_size(dir + "/default.h5");
  CHECK(plain > n * 17);
  CHECK(packed < plain * 3 / 4);
  std::filesystem::remove_all(dir);
}

TEST_CASE("results reader refuses wrong formats, newer majors and inconsistent shapes") {
  const std::string dir = ess::test::temp_dir("results_bad");
  auto write = [&](const std::string& name, const std::string& format, long long major, bool bad_shape) {
    h5::OutputFile out(dir + "/" + name);
    out.root().set_attr("format", format);
    out.root().set_attr("format_version", std::vector<long long>{major, 0});
    auto g = out.root().create_group("layers/x");
    g.set_attr("family", std::string("dense"));
    g.set_attr("layer_index", 0);
    g.set_attr("channel_kind", std::string("channel"));
    g.set_attr("seq_len", 4);
    g.set_attr("engine", std::string("dense"));
    g.set_attr("tol", 1e-3);
    g.set_attr("tol_mode", std::string("absolute"));
    std::vector<int> t(3, 1), idx = {1, 2, 3};
    std::vector<double> e(bad_shape ? 2 : 3, 1.0);
    g.write("tolerance_ess", {1, 1, 3}, t.data());
    g.write("entropy_ess", {1, 1, static_cast<std::int64_t>(e.size())}, e.data());
    g.write("tss", {3}, idx.data());
    g.write("indices", {3}, idx.data());
    out.commit();
  };
  write("ok.h5", "ess-results", 1, false);
  CHECK_NOTHROW(read_results(dir + "/ok.h5"));
  write("fmt.h5", "ess-operators", 1, false);
  CHECK_THROWS_WITH_AS(read_results(dir + "/fmt.h5"), doctest::Contains("fmt.h5"), InputError);
  write("major.h5", "ess-results", 2, false);
  CHECK_THROWS_WITH_AS(read_results(dir + "/major.h5"), doctest::Contains("newer"), InputError);
  write("shape.h5", "ess-results", 1, true);
  CHECK_THROWS_WITH_AS(read_results(dir + "/shape.h5"), doctest::Contains("entropy_ess"), InputError);
  CHECK_THROWS_AS(read_results(dir + "/missing.h5"), InputError);
  {
    std::ofstream junk(dir + "/junk.h5");
    junk << "not hdf5 at all";
  }
  CHECK_THROWS_WITH_AS(read_results(dir + "/junk.h5"), doctest::Contains("not an HDF5"), InputError);
  std::filesystem::remove_all(dir);
}

TEST_CASE("an output file in a missing directory is refused before anything is written") {
  CHECK_THROWS_AS(h5::OutputFile("/nonexistent_dir_ess/x.h5"), InputError);
}
