// Every CPU backend operation against a plain double-precision reference written here (in the spirit
// of llama.cpp's test-backend-ops), in three modes: `cpu` (float32, weights packed for oneDNN),
// `cpu-bf16` (bf16 weights; oneDNN's bf16 products where the CPU has them) and `cpu-bf16` forced
// onto the portable fallback (bf16 widened block by block), so that the fallback is tested on
// machines with AVX512_BF16 too. Odd sizes, empty inputs and duplicate destinations included.
// float32 products within 1e-5 of the reference (max|diff| / max|ref|); bf16 products within 1e-5 of
// the reference fed the same bf16-rounded operands.
#define BOOST_TEST_MODULE cpu_backend_ops
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <random>

#include "backend/backend_registry.h"
#include "backend/cpu/cpu_backend.h"
#include "support/backend_op_check.h"
#include "util/error.h"
#include "util/half_precision.h"

using namespace moetrace;
using test::get;
using test::HostWeight;
using test::round_bf16;

namespace {

std::mt19937 rng(4321);
std::vector<float> randn(std::size_t n, float scale = 1.f) { return test::randn(rng, n, scale); }
float rb(float x) { return bf16_to_float(float_to_bf16(x)); }

// y = x W^T in double; x [m, k], W [n, k].
std::vector<double> ref_linear(const std::vector<float>& x, const std::vector<float>& w, int m, int k, int n) {
  std::vector<double> y(static_cast<std::size_t>(m) * n);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      double s = 0;
      for (int c = 0; c < k; ++c) s += static_cast<double>(x[i * k + c]) * w[j * k + c];
      y[i * n + j] = s;
    }
  return y;
}

struct Mode {
  std::string label;
  CpuBackendOptions options;
  bool bf16() const { return options.precision == CpuPrecision::BF16; }
  std::unique_ptr<Backend> make() const { return make_cpu_backend(options); }
};

const std::vector<Mode> kModes = {
    {"cpu", {}},
    {"cpu-bf16", {.precision = CpuPrecision::BF16}},
    {"cpu-bf16 fallback", {.precision = CpuPrecision::BF16, .force_bf16_fallback = true}},
};

}  // namespace

BOOST_AUTO_TEST_CASE(registry_names) {
  BOOST_TEST(make_backend("cpu")->name() == "cpu");
  BOOST_TEST(make_backend("cpu-bf16")->name() == "cpu-bf16");
  const auto names = backend_names();
  BOOST_TEST((std::find(names.begin(), names.end(), "cpu-bf16") != names.end()));
}

BOOST_AUTO_TEST_CASE(memory_and_row_movement) {
  auto b = make_backend("cpu");
  const int R = 23, C = 17;
  const auto h = randn(R * C), h2 = randn(R * C);
  auto x = b->upload(h.data(), R, C), y = b->upload(h2.data(), R, C);
  BOOST_TEST(get(*b, *x) == h);
  BOOST_TEST(get(*b, *b->zeros(3, 5)) == std::vector<float>(15, 0.f));
  BOOST_TEST(b->zeros(0, 7)->rows() == 0);
  const std::vector<int> rows = {9, 2, 2, 22, 0};
  const auto g = get(*b, *b->gather_rows(*x, rows));
  for (std::size_t i = 0; i < rows.size(); ++i)
    for (int c = 0; c < C; ++c) BOOST_TEST(g[i * C + c] == h[rows[i] * C + c]);
  // copy_rows and add_rows (duplicate destination: in index order)
  auto d = b->upload(h2.data(), R, C);
  b->copy_rows(*x, {1, 4}, *d, {0, 3});
  b->add_rows(*x, {5, 6}, *d, {7, 7}, 0.5f);
  const auto dv = get(*b, *d);
  for (int c = 0; c < C; ++c) {
    BOOST_TEST(dv[0 * C + c] == h[1 * C + c]);
    BOOST_TEST(dv[3 * C + c] == h[4 * C + c]);
    BOOST_TEST(dv[7 * C + c] == (h2[7 * C + c] + 0.5f * h[5 * C + c]) + 0.5f * h[6 * C + c]);
  }
  auto cat = get(*b, *b->concat_rows({x.get(), y.get()}));
  BOOST_TEST(cat.size() == 2u * R * C);
  BOOST_TEST(std::equal(h2.begin(), h2.end(), cat.begin() + R * C));
  b->add(*x, *y);
  const auto s = get(*b, *x);
  for (int i = 0; i < R * C; ++i) BOOST_TEST(s[i] == h[i] + h2[i]);
  auto slots = b->upload(h.data(), 22, C);
  const auto ss = get(*b, *b->sum_slots(*slots, 2));
  for (int r = 0; r < 11; ++r)
    for (int c = 0; c < C; ++c) BOOST_TEST(ss[r * C + c] == (0.f + h[2 * r * C + c]) + h[(2 * r + 1) * C + c]);
}

BOOST_AUTO_TEST_CASE(embed_select_logits_and_tables_in_every_mode) {
  const int V = 29, H = 19;
  for (const Mode& mode : kModes)
    for (bool file_bf16 : {false, true}) {
      auto b = mode.make();
      HostWeight table("model.embed_tokens.weight", {V, H}, randn(V * H), file_bf16);
      auto w = b->upload_weight(table.view);
      // tables are plain: bf16 in bf16 mode, float32 otherwise
      BOOST_TEST(b->weight_bytes() == static_cast<std::size_t>(V) * H * (mode.bf16() ? 2 : 4));
      const std::vector<int> ids = {3, 0, 28, 3};
      const auto e = get(*b, *b->embed(*w, ids));
      const auto expect = mode.bf16() ? round_bf16(table.f) : table.f;
      for (std::size_t i = 0; i < ids.size(); ++i)
        for (int c = 0; c < H; ++c) BOOST_TEST(e[i * H + c] == expect[ids[i] * H + c]);
      const auto xs = randn(2 * H);
      auto x = b->upload(xs.data(), 2, H);
      const std::vector<int> pick = {1, 2, 27, 27};
      const auto got = b->select_logits(*x, *w, pick, 2);
      std::vector<double> ref(4);
      for (int r = 0; r < 2; ++r)
        for (int j = 0; j < 2; ++j)
          for (int c = 0; c < H; ++c) ref[r * 2 + j] += static_cast<double>(xs[r * H + c]) * expect[pick[r * 2 + j] * H + c];
      CHECK_CLOSE(got, ref, 1e-5, mode.label << " select_logits");
      // linear on a table (the full read-out) uses the plain path
      const auto xr = mode.bf16() ? round_bf16(xs) : xs;
      CHECK_CLOSE(get(*b, *b->linear(*x, *w)), ref_linear(xr, expect, 2, H, V), 1e-5, mode.label << " linear on a table");
    }
}

BOOST_AUTO_TEST_CASE(linear_odd_sizes_every_mode) {
  const std::vector<std::array<int, 3>> sizes = {{1, 1, 1}, {3, 37, 53}, {16, 64, 96}, {33, 130, 7}, {5, 300, 260}, {64, 48, 520}};
  for (const Mode& mode : kModes)
    for (const auto& [m, k, n] : sizes) {
      auto b = mode.make();
      HostWeight w("model.layers.0.self_attn.q_proj.weight", {n, k}, randn(n * k), /*as_bf16=*/mode.bf16());
      const auto xs = randn(m * k);
      auto x = b->upload(xs.data(), m, k);
      auto dw = b->upload_weight(w.view);
      const auto got = get(*b, *b->linear(*x, *dw));
      const auto xr = mode.bf16() ? round_bf16(xs) : xs;
      CHECK_CLOSE(got, ref_linear(xr, w.f, m, k, n), 1e-5, mode.label << " linear " << m << "x" << k << "x" << n);
      // each row alone gives the row of the batch (a row's result never depends on its batch)
      for (int r : {0, m - 1}) {
        auto one = b->gather_rows(*x, {r});
        const auto g1 = get(*b, *b->linear(*one, *dw));
        std::vector<double> batch_row(got.begin() + static_cast<std::ptrdiff_t>(r) * n, got.begin() + static_cast<std::ptrdiff_t>(r + 1) * n);
        CHECK_CLOSE(g1, batch_row, 1e-6, mode.label << " row " << r << " alone vs in batch");
      }
    }
  // an empty batch
  auto b = make_backend("cpu");
  HostWeight w("w", {8, 4}, randn(32), false);
  auto dw = b->upload_weight(w.view);
  auto x = b->zeros(0, 4);
  BOOST_TEST(b->linear(*x, *dw)->rows() == 0);
}

BOOST_AUTO_TEST_CASE(weights_held_in_each_mode) {
  // Packed layouts pad the output dimension to oneDNN's block (up to 64) and the inner one to 16:
  // real widths are multiples of both, so held = file size; small odd weights may hold a little more.
  const auto padded = [](int n, int k, int bytes) {
    return static_cast<std::size_t>((n + 63) / 64 * 64) * ((k + 15) / 16 * 16) * bytes;
  };
  const int n = 64, k = 128;
  for (const Mode& mode : kModes) {
    auto b = mode.make();
    HostWeight proj("model.layers.0.self_attn.o_proj.weight", {n, k}, randn(n * k), true);
    HostWeight router("model.layers.0.mlp.gate.weight", {16, k}, randn(16 * k), true);
    HostWeight norm("model.layers.0.input_layernorm.weight", {k}, randn(k), true);
    HostWeight odd("model.layers.0.self_attn.k_proj.weight", {37, 53}, randn(37 * 53), true);
    b->upload_weight(proj.view);
    const std::size_t after_proj = b->weight_bytes();
    BOOST_TEST(after_proj == static_cast<std::size_t>(n) * k * (mode.bf16() ? 2 : 4), mode.label);
    b->upload_weight(router.view);  // the router stays float32 in bf16 mode
    const std::size_t router_bytes = b->weight_bytes() - after_proj;
    BOOST_TEST(router_bytes >= 16u * k * 4, mode.label);
    BOOST_TEST(router_bytes <= padded(16, k, 4), mode.label);
    b->upload_weight(norm.view);  // plain float32
    BOOST_TEST(b->weight_bytes() - after_proj - router_bytes == k * 4u, mode.label);
    const std::size_t before_odd = b->weight_bytes();
    b->upload_weight(odd.view);
    BOOST_TEST(b->weight_bytes() - before_odd >= 37u * 53 * (mode.bf16() ? 2 : 4), mode.label);
    BOOST_TEST(b->weight_bytes() - before_odd <= padded(37, 53, 4), mode.label);
  }
}

BOOST_AUTO_TEST_CASE(rms_norm_rope_attention) {
  auto b = make_backend("cpu");
  const int R = 7, heads = 3, kv = 1, hd = 10, W = heads * hd;
  const auto xs = randn(R * W);
  auto x = b->upload(xs.data(), R, W);
  HostWeight whole("n", {W}, randn(W), false), head("h", {hd}, randn(hd), false);
  for (auto* nw : {&whole, &head}) {
    const int group = static_cast<int>(nw->f.size());
    const auto got = get(*b, *b->rms_norm(*x, *b->upload_weight(nw->view), group, 1e-6f));
    std::vector<double> ref(xs.size());
    for (int r = 0; r < R; ++r)
      for (int g = 0; g < W / group; ++g) {
        double ss = 0;
        for (int c = 0; c < group; ++c) ss += static_cast<double>(xs[r * W + g * group + c]) * xs[r * W + g * group + c];
        const double inv = 1.0 / std::sqrt(ss / group + 1e-6);
        for (int c = 0; c < group; ++c) ref[r * W + g * group + c] = nw->f[c] * xs[r * W + g * group + c] * inv;
      }
    CHECK_CLOSE(got, ref, 1e-6, "rms_norm group " << group);
  }
  // RoPE, rotate-half, positions up to 6000
  const std::vector<int> pos = {0, 1, 2, 17, 300, 5999, 6000};
  auto xr = b->upload(xs.data(), R, W);
  b->rope(*xr, pos, hd, 1e6);
  std::vector<double> ref(xs.size());
  for (int r = 0; r < R; ++r)
    for (int h = 0; h < heads; ++h)
      for (int i = 0; i < hd / 2; ++i) {
        const double ang = pos[r] * std::pow(1e6, -2.0 * i / hd);
        const double a = xs[r * W + h * hd + i], c2 = xs[r * W + h * hd + i + hd / 2];
        ref[r * W + h * hd + i] = a * std::cos(ang) - c2 * std::sin(ang);
        ref[r * W + h * hd + i + hd / 2] = c2 * std::cos(ang) + a * std::sin(ang);
      }
  CHECK_CLOSE(get(*b, *xr), ref, 1e-5, "rope");
  // attention: two streams, GQA 3:1; the second continues from position 2 with a 5-row cache
  const auto ks = randn(5 * kv * hd), vs = randn(5 * kv * hd);
  auto K = b->upload(ks.data(), 5, kv * hd), V = b->upload(vs.data(), 5, kv * hd);
  const auto qs = randn(6 * W);
  auto q = b->upload(qs.data(), 6, W);
  std::vector<AttentionSegment> segs = {{0, 3, 0, K.get(), V.get()}, {3, 3, 2, K.get(), V.get()}};
  const auto got = get(*b, *b->attention(*q, segs, {heads, kv, hd}));
  std::vector<double> aref(6 * W);
  for (const auto& s : segs)
    for (int i = 0; i < s.num_queries; ++i)
      for (int h = 0; h < heads; ++h) {
        const int p = s.first_pos + i;
        std::vector<double> sc(p + 1);
        double mx = -INFINITY, den = 0;
        for (int j = 0; j <= p; ++j) {
          double d = 0;
          for (int c = 0; c < hd; ++c) d += static_cast<double>(qs[(s.q_row + i) * W + h * hd + c]) * ks[j * hd + c];
          sc[j] = d / std::sqrt(static_cast<double>(hd));
          mx = std::max(mx, sc[j]);
        }
        for (auto& v : sc) den += (v = std::exp(v - mx));
        for (int j = 0; j <= p; ++j)
          for (int c = 0; c < hd; ++c) aref[(s.q_row + i) * W + h * hd + c] += sc[j] / den * vs[j * hd + c];
      }
  CHECK_CLOSE(got, aref, 1e-5, "attention");
}

BOOST_AUTO_TEST_CASE(run_experts_every_mode) {
  const int H = 72, I = 40, R = 13;
  for (const Mode& mode : kModes)
    for (int ntasks : {1, 5}) {  // fewer tasks than threads (sequential tasks) and more
      auto b = mode.make();
      std::vector<std::unique_ptr<HostWeight>> hw;
      std::vector<WeightPtr> dw;
      for (int e = 0; e < ntasks; ++e) {
        hw.push_back(std::make_unique<HostWeight>("experts.gate_proj.weight", std::vector<std::int64_t>{I, H}, randn(I * H, 0.2f), mode.bf16()));
        hw.push_back(std::make_unique<HostWeight>("experts.up_proj.weight", std::vector<std::int64_t>{I, H}, randn(I * H, 0.2f), mode.bf16()));
        hw.push_back(std::make_unique<HostWeight>("experts.down_proj.weight", std::vector<std::int64_t>{H, I}, randn(H * I, 0.2f), mode.bf16()));
      }
      for (auto& w : hw) dw.push_back(b->upload_weight(w->view));
      const auto xs = randn(R * H);
      auto x = b->upload(xs.data(), R, H);
      std::vector<ExpertTask> tasks(ntasks);
      int out_row = 0;
      for (int e = 0; e < ntasks; ++e) {
        tasks[e].gate = dw[3 * e].get();
        tasks[e].up = dw[3 * e + 1].get();
        tasks[e].down = dw[3 * e + 2].get();
        const int rows = e == 2 ? 0 : (e % 2 ? 1 : 4);  // an empty task, single rows, several rows
        for (int i = 0; i < rows; ++i) {
          tasks[e].in_rows.push_back((e * 5 + i * 3) % R);
          tasks[e].out_rows.push_back(out_row++);
          tasks[e].weights.push_back(0.25f + 0.1f * i);
        }
      }
      auto out = b->zeros(out_row, H);
      b->run_experts(*x, tasks, *out);
      // reference: bf16 mode rounds each product's input (x and silu(g)*u) to bf16
      std::vector<double> ref(static_cast<std::size_t>(out_row) * H);
      for (int e = 0; e < ntasks; ++e)
        for (std::size_t i = 0; i < tasks[e].in_rows.size(); ++i) {
          std::vector<float> in(xs.begin() + tasks[e].in_rows[i] * H, xs.begin() + (tasks[e].in_rows[i] + 1) * H);
          if (mode.bf16()) in = round_bf16(in);
          const auto g = ref_linear(in, hw[3 * e]->f, 1, H, I), u = ref_linear(in, hw[3 * e + 1]->f, 1, H, I);
          std::vector<float> a(I);
          for (int j = 0; j < I; ++j) {
            const double v = g[j] / (1 + std::exp(-g[j])) * u[j];
            a[j] = mode.bf16() ? rb(static_cast<float>(v)) : static_cast<float>(v);
          }
          const auto y = ref_linear(a, hw[3 * e + 2]->f, 1, I, H);
          for (int c = 0; c < H; ++c) ref[tasks[e].out_rows[i] * H + c] = tasks[e].weights[i] * y[c];
        }
      // bf16: the float32 sums of g and u may round silu(g)*u to the neighbouring bf16 value
      CHECK_CLOSE(get(*b, *out), ref, mode.bf16() ? 2e-3 : 1e-5, mode.label << " run_experts, " << ntasks << " tasks");
    }
}

BOOST_AUTO_TEST_CASE(row_distances_against_a_long_double_reference) {
  // ||a - b|| for pairs of rows of different tensors, a null tensor standing for a row of zeros.
  auto b = make_cpu_backend();
  const int H = 37;
  const auto av = randn(3 * H), bv = randn(2 * H);
  auto a = b->upload(av.data(), 3, H);
  auto c = b->upload(bv.data(), 2, H);
  const std::vector<RowPair> pairs = {{{a.get(), 0}, {c.get(), 1}}, {{a.get(), 2}, {}}, {{}, {c.get(), 0}},
                                      {{a.get(), 1}, {a.get(), 1}}, {{}, {}}};
  auto row = [&](const RowRef& r, int i) -> long double {
    if (!r.tensor) return 0;
    return (r.tensor == a.get() ? av : bv)[r.row * H + i];
  };
  const std::vector<double> got = b->row_distances(pairs);
  BOOST_TEST_REQUIRE(got.size() == pairs.size());
  for (std::size_t p = 0; p < pairs.size(); ++p) {
    long double s = 0;
    for (int i = 0; i < H; ++i) s += (row(pairs[p].a, i) - row(pairs[p].b, i)) * (row(pairs[p].a, i) - row(pairs[p].b, i));
    BOOST_TEST(got[p] == static_cast<double>(std::sqrt(s)), boost::test_tools::tolerance(1e-6));
  }
  BOOST_TEST(got[3] == 0.0);
  BOOST_TEST(got[4] == 0.0);
  BOOST_TEST(b->row_distances({}).empty());
}

BOOST_AUTO_TEST_CASE(rows_std_against_a_two_pass_long_double_reference) {
  // Population standard deviation of the listed rows (repeats count), in every mode; the table is
  // bf16-exact so that the bf16 modes hold the same values. More rows than one read chunk.
  const int V = 5000, H = 3;
  const auto table = round_bf16(randn(static_cast<std::size_t>(V) * H, 0.5f));
  for (const Mode& mode : kModes) {
    auto b = mode.make();
    HostWeight w("model.embed_tokens.weight", {V, H}, table, true);
    auto wt = b->upload_weight(w.view);
    for (const std::vector<int>& rows : {std::vector<int>{7}, std::vector<int>{3, 3, 4999, 0}, [] {
           std::vector<int> all(V);
           for (int i = 0; i < V; ++i) all[i] = V - 1 - i;
           return all;
         }()}) {
      long double mean = 0, m2 = 0;
      for (int r : rows)
        for (int c = 0; c < H; ++c) mean += table[r * H + c];
      mean /= static_cast<long double>(rows.size() * H);
      for (int r : rows)
        for (int c = 0; c < H; ++c) m2 += (table[r * H + c] - mean) * (table[r * H + c] - mean);
      const double want = static_cast<double>(std::sqrt(m2 / (rows.size() * H)));
      BOOST_TEST(b->rows_std(*wt, rows) == want, boost::test_tools::tolerance(1e-9));
    }
    BOOST_CHECK_THROW(b->rows_std(*wt, {}), InternalError);
  }
}
