// The backend property the batched pipeline relies on (docs/engine.md, "Batched
// execution"): every token row of linear, run_experts, attention and
// select_logits is computed bit-identically whatever other rows share the call
// (how many, and where the row sits). The pipeline puts any number of cases
// into one engine call, and its results must not depend on the chunk size or
// rank count. Any backend (the CPU reference and faster CPU kernels alike) must
// pass this.
#define BOOST_TEST_MODULE row_independence
#include <boost/test/unit_test.hpp>
#include <cstring>
#include <random>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"

using namespace moetrace;

namespace {

struct HostWeight {
  std::vector<float> values;
  TensorView view;
};

HostWeight random_weight(int rows, int cols, std::mt19937 &rng, const std::string &name = "w") {
  HostWeight w;
  std::normal_distribution<float> n(0.0f, 0.1f);
  w.values.resize(static_cast<std::size_t>(rows) * cols);
  for (float &v : w.values) v = n(rng);
  w.view.name = name;
  w.view.file = "test";
  w.view.dtype = DType::F32;
  w.view.shape = {rows, cols};
  w.view.data = reinterpret_cast<const std::byte *>(w.values.data());
  return w;
}

std::vector<float> random_rows(int rows, int cols, std::mt19937 &rng) {
  std::normal_distribution<float> n;
  std::vector<float> v(static_cast<std::size_t>(rows) * cols);
  for (float &x : v) x = n(rng);
  return v;
}

std::vector<float> download(Backend &b, const Tensor &t) {
  std::vector<float> v(static_cast<std::size_t>(t.rows()) * t.cols());
  b.download(t, v.data());
  return v;
}

// Row `r` of a [rows, cols] host matrix.
std::vector<float> row(const std::vector<float> &m, int cols, int r) {
  return {m.begin() + static_cast<std::ptrdiff_t>(r) * cols, m.begin() + static_cast<std::ptrdiff_t>(r + 1) * cols};
}

// Every CPU mode: the float32 reference, bf16 through oneDNN, and the portable
// bf16 fallback.
struct Mode {
  const char *name;
  CpuBackendOptions options;
};
const std::vector<Mode> kModes{{"cpu", {}},
                               {"cpu-bf16", {.precision = CpuPrecision::BF16}},
                               {"cpu-bf16 fallback", {.precision = CpuPrecision::BF16, .force_bf16_fallback = true}}};

// Batches of every size in `sizes`, the probe row placed at every offset in
// `offsets`.
const std::vector<int> kSizes{1, 2, 3, 5, 8, 13, 17, 31, 48, 64, 97};

}  // namespace

BOOST_AUTO_TEST_CASE(linear_rows_do_not_depend_on_their_batch) {
  for (const Mode &mode : kModes) {
    auto b = make_cpu_backend(mode.options);
    BOOST_TEST_CONTEXT("mode " << mode.name) {
      std::mt19937 rng(1);
      // Widths of the fixtures, of real models' attention / expert projections,
      // and odd ones.
      for (auto [out, in] :
           {std::pair{4, 8}, std::pair{96, 64}, std::pair{768, 2048}, std::pair{1000, 300}, std::pair{257, 513}}) {
        const HostWeight w = random_weight(out, in, rng);
        WeightPtr W = b->upload_weight(w.view);
        const std::vector<float> x = random_rows(100, in, rng);
        const std::vector<float> probe = row(x, in, 0);
        const std::vector<float> ref = download(*b, *b->linear(*b->upload(probe.data(), 1, in), *W));
        for (int n : kSizes)
          for (int at : {0, n / 2, n - 1}) {
            std::vector<float> batch(x.begin(), x.begin() + static_cast<std::ptrdiff_t>(n) * in);
            std::copy(probe.begin(), probe.end(), batch.begin() + static_cast<std::ptrdiff_t>(at) * in);
            const std::vector<float> y = download(*b, *b->linear(*b->upload(batch.data(), n, in), *W));
            BOOST_TEST((row(y, out, at) == ref),
                       "linear [" << out << " x " << in << "]: row " << at << " of " << n << " differs");
          }
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(expert_rows_do_not_depend_on_how_many_rows_an_expert_gets) {
  for (const Mode &mode : kModes) {
    auto b = make_cpu_backend(mode.options);
    BOOST_TEST_CONTEXT("mode " << mode.name) {
      std::mt19937 rng(2);
      for (auto [H, I] : {std::pair{64, 48}, std::pair{256, 768}}) {
        const HostWeight g = random_weight(I, H, rng), u = random_weight(I, H, rng), d = random_weight(H, I, rng);
        WeightPtr G = b->upload_weight(g.view), U = b->upload_weight(u.view), D = b->upload_weight(d.view);
        const std::vector<float> x = random_rows(100, H, rng);
        auto run = [&](int n) {
          TensorPtr in = b->upload(x.data(), n, H);
          ExpertTask t{G.get(), U.get(), D.get(), {}, {}, {}};
          for (int i = 0; i < n; ++i) {
            t.in_rows.push_back(n - 1 - i);  // the probe (row 0) is the expert's last row
            t.out_rows.push_back(i);
            t.weights.push_back(0.5f);
          }
          TensorPtr out = b->zeros(n, H);
          b->run_experts(*in, {t}, *out);
          return row(download(*b, *out), H, n - 1);
        };
        const std::vector<float> ref = run(1);
        for (int n : kSizes) BOOST_TEST((run(n) == ref), "expert [" << H << ", " << I << "]: " << n << " rows differ");
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(attention_and_logit_rows_do_not_depend_on_other_streams) {
  for (const Mode &mode : kModes) {
    auto b = make_cpu_backend(mode.options);
    BOOST_TEST_CONTEXT("mode " << mode.name) {
      std::mt19937 rng(3);
      const AttentionShape shape{4, 2, 16};
      const int T = 9, qw = 64, kvw = 32;
      const std::vector<float> k = random_rows(T, kvw, rng), v = random_rows(T, kvw, rng);
      TensorPtr K = b->upload(k.data(), T, kvw), V = b->upload(v.data(), T, kvw);
      const std::vector<float> q = random_rows(100, qw, rng);
      // Named as the read-out table, which every backend keeps readable by rows.
      const HostWeight table = random_weight(50, qw, rng, "lm_head.weight");
      WeightPtr Wt = b->upload_weight(table.view);
      // One stream of T queries, then the same stream after n - 1 other
      // streams.
      auto run = [&](int others) {
        std::vector<AttentionSegment> segs;
        for (int s = 0; s <= others; ++s) segs.push_back({s * T, T, 0, K.get(), V.get()});
        std::vector<float> qs;
        for (int s = 0; s <= others; ++s)
          qs.insert(qs.end(), q.begin() + (s == others ? 0 : (s + 1) * 5) * qw,
                    q.begin() + ((s == others ? 0 : (s + 1) * 5) + T) * qw);
        TensorPtr Q = b->upload(qs.data(), (others + 1) * T, qw);
        const std::vector<float> out = download(*b, *b->attention(*Q, segs, shape));
        std::vector<int> ids;
        for (int r = 0; r < (others + 1) * T; ++r) ids.insert(ids.end(), {r % T, (7 * (r % T)) % 50});
        const std::vector<float> logits = b->select_logits(*Q, *Wt, ids, 2);
        std::vector<float> mine(out.begin() + static_cast<std::ptrdiff_t>(others) * T * qw, out.end());
        mine.insert(mine.end(), logits.end() - 2 * T, logits.end());
        return mine;
      };
      const std::vector<float> ref = run(0);
      for (int others : {1, 2, 5}) BOOST_TEST((run(others) == ref), "stream after " << others << " others differs");
    }
  }
}
