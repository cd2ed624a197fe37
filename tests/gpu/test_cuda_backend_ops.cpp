// Every Backend operation of the CUDA backend against the CPU reference on random inputs (in the
// spirit of llama.cpp's test-backend-ops: one reference, each op checked on its own), in float32
// mode within 1e-5 relative (max|diff| / max|ref|), and in bf16 mode against the reference fed the
// same bf16-rounded operands. Label `gpu`; exits 77 without a GPU.
#define BOOST_TEST_MODULE cuda_backend_ops
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <tuple>

#include "backend/backend_registry.h"
#include "gpu_skip.h"
#include "kernels/cuda_backend.h"
#include "util/error.h"
#include "support/backend_op_check.h"
#include "util/half_precision.h"

using namespace moetrace;
using test::get;
using test::HostWeight;
using test::round_bf16;
using test::route_request;

BOOST_TEST_GLOBAL_FIXTURE(RequireGpu);

namespace {

std::mt19937 rng(1234);
std::vector<float> randn(std::size_t n, float scale = 1.f) { return test::randn(rng, n, scale); }

struct Pair {
  std::unique_ptr<Backend> cpu = make_cpu_backend();
  std::unique_ptr<Backend> gpu;
  explicit Pair(const std::string& name) : gpu(make_backend(name)) {}
};

constexpr double kF32 = 1e-5;

}  // namespace

BOOST_AUTO_TEST_CASE(memory_roundtrip_and_zeros) {
  Pair p("cuda");
  const auto h = randn(37 * 53);
  auto t = p.gpu->upload(h.data(), 37, 53);
  BOOST_TEST(get(*p.gpu, *t) == h);
  auto z = p.gpu->zeros(5, 7);
  BOOST_TEST(get(*p.gpu, *z) == std::vector<float>(35, 0.f));
  auto e = p.gpu->zeros(0, 7);
  BOOST_TEST(e->rows() == 0);
  const auto big = randn(3u << 20);  // above the staging sizes
  auto tb = p.gpu->upload(big.data(), 3 << 10, 1 << 10);
  BOOST_TEST(get(*p.gpu, *tb) == big);
}

BOOST_AUTO_TEST_CASE(rows_views_and_copy_on_write) {
  Pair p("cuda");
  const int R = 40, C = 33;
  const auto h = randn(R * C), h2 = randn(R * C);
  auto xc = p.cpu->upload(h.data(), R, C), yc = p.cpu->upload(h2.data(), R, C);
  auto xg = p.gpu->upload(h.data(), R, C), yg = p.gpu->upload(h2.data(), R, C);

  const std::vector<int> contiguous = {5, 6, 7, 8}, scattered = {9, 2, 2, 39, 0};
  for (const auto& rows : {contiguous, scattered}) {
    auto a = p.cpu->gather_rows(*xc, rows);
    auto b = p.gpu->gather_rows(*xg, rows);
    BOOST_TEST(get(*p.gpu, *b) == get(*p.cpu, *a));
  }
  // A view keeps its values when its source changes, and vice versa.
  auto view = p.gpu->gather_rows(*xg, contiguous);
  const auto before = get(*p.gpu, *view);
  p.gpu->add(*xg, *yg);
  BOOST_TEST(get(*p.gpu, *view) == before);
  p.cpu->add(*xc, *yc);
  BOOST_TEST(get(*p.gpu, *xg) == get(*p.cpu, *xc));
  p.gpu->add_rows(*yg, {0}, *view, {0}, 1.f);
  BOOST_TEST(get(*p.gpu, *xg) == get(*p.cpu, *xc));

  // concat (lazy) of views and dense tensors, then writes to a part.
  auto c1 = p.gpu->gather_rows(*xg, {0, 1, 2});
  auto c2 = p.gpu->gather_rows(*yg, {7, 3});
  auto cat = p.gpu->concat_rows({c1.get(), c2.get(), xg.get()});
  auto catc = p.cpu->concat_rows({p.cpu->gather_rows(*xc, {0, 1, 2}).get(), p.cpu->gather_rows(*yc, {7, 3}).get(), xc.get()});
  p.gpu->add(*xg, *yg);  // must not change cat
  BOOST_TEST(get(*p.gpu, *cat) == get(*p.cpu, *catc));
  auto cat2 = p.gpu->concat_rows({cat.get(), c1.get()});
  BOOST_TEST(cat2->rows() == cat->rows() + 3);
  auto empty = p.gpu->gather_rows(*xg, {});
  auto cat3 = p.gpu->concat_rows({empty.get(), c1.get()});
  BOOST_TEST(get(*p.gpu, *cat3) == get(*p.gpu, *c1));
}

BOOST_AUTO_TEST_CASE(copy_rows_and_add_rows_with_duplicates) {
  Pair p("cuda");
  const int R = 20, C = 300;
  const auto s = randn(R * C), d = randn(R * C);
  for (bool dup : {false, true}) {
    const std::vector<int> src = {3, 1, 4, 1, 5}, dst = dup ? std::vector<int>{2, 7, 2, 9, 7} : std::vector<int>{2, 7, 3, 9, 0};
    auto sc = p.cpu->upload(s.data(), R, C), dc = p.cpu->upload(d.data(), R, C);
    auto sg = p.gpu->upload(s.data(), R, C), dg = p.gpu->upload(d.data(), R, C);
    p.cpu->copy_rows(*sc, src, *dc, dst);
    p.gpu->copy_rows(*sg, src, *dg, dst);
    BOOST_TEST(get(*p.gpu, *dg) == get(*p.cpu, *dc));
    p.cpu->add_rows(*sc, src, *dc, dst, -0.75f);
    p.gpu->add_rows(*sg, src, *dg, dst, -0.75f);
    CHECK_CLOSE(get(*p.gpu, *dg), get(*p.cpu, *dc), 1e-6, "add_rows dup=" << dup);
  }
}

BOOST_AUTO_TEST_CASE(embed_sum_slots_and_select_logits) {
  for (const std::string mode : {"cuda", "cuda-bf16"}) {
    Pair p(mode);
    const int V = 300, H = 96;
    const auto table = round_bf16(randn(V * H));  // bf16-exact, so both modes must match exactly
    HostWeight w("model.embed_tokens.weight", {V, H}, table, true);
    auto wc = p.cpu->upload_weight(w.view);
    auto wg = p.gpu->upload_weight(w.view);
    const std::vector<int> ids = {0, 299, 17, 17, 5};
    BOOST_TEST(get(*p.gpu, *p.gpu->embed(*wg, ids)) == get(*p.cpu, *p.cpu->embed(*wc, ids)));

    const int N = 6, K = 4;
    const auto slots = randn(N * K * H);
    auto sc = p.cpu->upload(slots.data(), N * K, H);
    auto sg = p.gpu->upload(slots.data(), N * K, H);
    BOOST_TEST(get(*p.gpu, *p.gpu->sum_slots(*sg, K)) == get(*p.cpu, *p.cpu->sum_slots(*sc, K)));

    const auto x = randn(3 * H);
    auto xc = p.cpu->upload(x.data(), 3, H);
    auto xg = p.gpu->upload(x.data(), 3, H);
    const std::vector<int> pick = {1, 2, 299, 0, 7, 7};
    CHECK_CLOSE(p.gpu->select_logits(*xg, *wg, pick, 2), p.cpu->select_logits(*xc, *wc, pick, 2), kF32,
                mode << " select_logits");
  }
}

BOOST_AUTO_TEST_CASE(row_distances_and_rows_std_equal_the_cpu_bit_for_bit) {
  // Both are summed in double in a fixed order (the protocol's noise scale and equal-norm control
  // must not depend on the backend), so the CUDA results equal the CPU's exactly.
  for (const std::string mode : {"cuda", "cuda-bf16"}) {
    Pair p(mode);
    const int H = 2048, V = 700;
    const auto av = randn(4 * H), bv = randn(3 * H);
    auto ac = p.cpu->upload(av.data(), 4, H), bc = p.cpu->upload(bv.data(), 3, H);
    auto ag = p.gpu->upload(av.data(), 4, H), bg = p.gpu->upload(bv.data(), 3, H);
    auto pairs = [](const Tensor* a, const Tensor* b) {
      return std::vector<RowPair>{{{a, 0}, {b, 2}}, {{a, 3}, {}}, {{}, {b, 1}}, {{a, 1}, {a, 1}}, {{}, {}}};
    };
    BOOST_TEST(p.gpu->row_distances(pairs(ag.get(), bg.get())) == p.cpu->row_distances(pairs(ac.get(), bc.get())),
               boost::test_tools::per_element());
    const auto table = round_bf16(randn(V * 64));  // bf16-exact: both modes hold the same values
    HostWeight w("model.embed_tokens.weight", {V, 64}, table, true);
    auto wc = p.cpu->upload_weight(w.view);
    auto wg = p.gpu->upload_weight(w.view);
    std::vector<int> rows(V);
    std::iota(rows.begin(), rows.end(), 0);
    rows.push_back(5);
    BOOST_TEST(p.gpu->rows_std(*wg, rows) == p.cpu->rows_std(*wc, rows));
  }
}

BOOST_AUTO_TEST_CASE(linear_in_both_precisions) {
  for (const auto& [n, in, out] : {std::tuple{37, 96, 80}, std::tuple{1, 2048, 512}, std::tuple{300, 64, 1000}}) {
    const auto x = randn(n * in), w = randn(out * in, 0.05f);
    {
      Pair p("cuda");
      HostWeight hw("model.layers.0.self_attn.q_proj.weight", {out, in}, w);
      auto xc = p.cpu->upload(x.data(), n, in);
      auto xg = p.gpu->upload(x.data(), n, in);
      CHECK_CLOSE(get(*p.gpu, *p.gpu->linear(*xg, *p.gpu->upload_weight(hw.view))),
                  get(*p.cpu, *p.cpu->linear(*xc, *p.cpu->upload_weight(hw.view))), kF32, "linear f32 " << n);
    }
    {
      Pair p("cuda-bf16");
      HostWeight hw("model.layers.0.self_attn.q_proj.weight", {out, in}, w);
      const auto xb = round_bf16(x);
      auto xc = p.cpu->upload(xb.data(), n, in);
      auto xg = p.gpu->upload(x.data(), n, in);
      HostWeight hb("ref", {out, in}, round_bf16(w));
      CHECK_CLOSE(get(*p.gpu, *p.gpu->linear(*xg, *p.gpu->upload_weight(hw.view))),
                  get(*p.cpu, *p.cpu->linear(*xc, *p.cpu->upload_weight(hb.view))), 1e-5, "linear bf16 " << n);
      BOOST_TEST(p.gpu->weight_bytes() == static_cast<std::size_t>(out) * in * 2);
    }
  }
}

BOOST_AUTO_TEST_CASE(rms_norm_and_rope) {
  Pair p("cuda");
  const int N = 23, heads = 4;
  for (int hd : {16, 64, 128}) {
    const int W = heads * hd;
    const auto x = randn(N * W, 3.f);
    HostWeight whole("n1", {W}, randn(W)), head("n2", {hd}, randn(hd));
    auto xc = p.cpu->upload(x.data(), N, W);
    auto xg = p.gpu->upload(x.data(), N, W);
    CHECK_CLOSE(get(*p.gpu, *p.gpu->rms_norm(*xg, *p.gpu->upload_weight(whole.view), W, 1e-6f)),
                get(*p.cpu, *p.cpu->rms_norm(*xc, *p.cpu->upload_weight(whole.view), W, 1e-6f)), kF32, "rms whole");
    CHECK_CLOSE(get(*p.gpu, *p.gpu->rms_norm(*xg, *p.gpu->upload_weight(head.view), hd, 1e-6f)),
                get(*p.cpu, *p.cpu->rms_norm(*xc, *p.cpu->upload_weight(head.view), hd, 1e-6f)), kF32, "rms head");
    std::vector<int> pos(N);
    for (int i = 0; i < N; ++i) pos[i] = (i * 977) % 6000;
    p.cpu->rope(*xc, pos, hd, 1e6);
    p.gpu->rope(*xg, pos, hd, 1e6);
    CHECK_CLOSE(get(*p.gpu, *xg), get(*p.cpu, *xc), kF32, "rope hd=" << hd);
  }
}

BOOST_AUTO_TEST_CASE(attention_prompt_and_cache) {
  for (const auto& [heads, kv, hd] : {std::tuple{4, 2, 16}, std::tuple{32, 4, 128}, std::tuple{8, 8, 64}, std::tuple{6, 3, 40}}) {
    Pair p("cuda");
    const int T = 17, KW = kv * hd, QW = heads * hd;
    // Stream A: a whole prompt (prefill). Stream B: 1 token at position 12 against a cache of 12
    // rows (a lazy concatenation: prefix + own). Stream C: 3 tokens from position 5.
    const int NQ = T + 1 + 3;
    const auto q = randn(NQ * QW), kA = randn(T * KW), vA = randn(T * KW), kB = randn(13 * KW), vB = randn(13 * KW),
               kC = randn(8 * KW), vC = randn(8 * KW);
    auto run = [&](Backend& b) {
      auto qt = b.upload(q.data(), NQ, QW);
      auto ka = b.upload(kA.data(), T, KW), va = b.upload(vA.data(), T, KW);
      auto kb_all = b.upload(kB.data(), 13, KW), vb_all = b.upload(vB.data(), 13, KW);
      auto kb_pre = b.gather_rows(*kb_all, [] { std::vector<int> v(12); std::iota(v.begin(), v.end(), 0); return v; }());
      auto vb_pre = b.gather_rows(*vb_all, [] { std::vector<int> v(12); std::iota(v.begin(), v.end(), 0); return v; }());
      auto kb_own = b.gather_rows(*kb_all, {12}), vb_own = b.gather_rows(*vb_all, {12});
      auto kb = b.concat_rows({kb_pre.get(), kb_own.get()}), vb = b.concat_rows({vb_pre.get(), vb_own.get()});
      auto kc = b.upload(kC.data(), 8, KW), vc = b.upload(vC.data(), 8, KW);
      std::vector<AttentionSegment> segs = {{0, T, 0, ka.get(), va.get()}, {T, 1, 12, kb.get(), vb.get()},
                                            {T + 1, 3, 5, kc.get(), vc.get()}};
      return get(b, *b.attention(*qt, segs, {heads, kv, hd}));
    };
    CHECK_CLOSE(run(*p.gpu), run(*p.cpu), kF32, "attention " << heads << "/" << kv << "/" << hd);
  }
}

BOOST_AUTO_TEST_CASE(experts_grouped_in_both_precisions) {
  const int N = 61, H = 64, I = 48, E = 7, K = 2;
  std::vector<HostWeight> ws;
  for (int e = 0; e < E; ++e) {
    ws.emplace_back("gate", std::vector<std::int64_t>{I, H}, randn(I * H, 0.1f));
    ws.emplace_back("up", std::vector<std::int64_t>{I, H}, randn(I * H, 0.1f));
    ws.emplace_back("down", std::vector<std::int64_t>{H, I}, randn(H * I, 0.1f));
  }
  const auto x = randn(N * H);
  for (const std::string mode : {"cuda", "cuda-bf16"}) {
    Pair p(mode);
    const bool bf = mode == "cuda-bf16";
    std::vector<WeightPtr> wc, wg;
    std::vector<HostWeight> rounded;
    for (auto& w : ws) {
      wg.push_back(p.gpu->upload_weight(w.view));
      rounded.emplace_back("r", w.view.shape, bf ? round_bf16(w.f) : w.f);
    }
    for (auto& w : rounded) wc.push_back(p.cpu->upload_weight(w.view));
    auto tasks_for = [&](const std::vector<WeightPtr>& w) {
      std::vector<ExpertTask> tasks;
      for (int e = 0; e < E; ++e) {
        if (e == 3) continue;  // an expert without tokens is simply absent
        ExpertTask t{w[3 * e].get(), w[3 * e + 1].get(), w[3 * e + 2].get(), {}, {}, {}};
        for (int r = 0; r < N; ++r)
          for (int j = 0; j < K; ++j)
            if ((r * 7 + j * 3) % E == e) {
              t.in_rows.push_back(r);
              t.out_rows.push_back(r * K + j);
              t.weights.push_back(0.25f + 0.01f * r);
            }
        tasks.push_back(std::move(t));
      }
      return tasks;
    };
    const auto xin = bf ? round_bf16(x) : x;
    auto xc = p.cpu->upload(xin.data(), N, H);
    auto xg = p.gpu->upload(x.data(), N, H);
    auto oc = p.cpu->zeros(N * K, H);
    auto og = p.gpu->zeros(N * K, H);
    p.cpu->run_experts(*xc, tasks_for(wc), *oc);
    p.gpu->run_experts(*xg, tasks_for(wg), *og);
    // bf16: the hidden activation is rounded to bf16 before the down product on the GPU only.
    CHECK_CLOSE(get(*p.gpu, *og), get(*p.cpu, *oc), bf ? 1e-2 : kF32, mode << " run_experts");
  }
}

BOOST_AUTO_TEST_CASE(bf16_mode_keeps_norms_and_router_in_float32) {
  Pair p("cuda-bf16");
  HostWeight norm("model.layers.0.input_layernorm.weight", {64}, randn(64));
  HostWeight router("model.layers.0.mlp.gate.weight", {8, 64}, randn(8 * 64));
  HostWeight proj("model.layers.0.mlp.experts.0.up_proj.weight", {8, 64}, randn(8 * 64));
  p.gpu->upload_weight(norm.view);
  BOOST_TEST(p.gpu->weight_bytes() == 64u * 4);
  p.gpu->upload_weight(router.view);
  BOOST_TEST(p.gpu->weight_bytes() == 64u * 4 + 8 * 64 * 4);
  p.gpu->upload_weight(proj.view);
  BOOST_TEST(p.gpu->weight_bytes() == 64u * 4 + 8 * 64 * 4 + 8 * 64 * 2);
}


BOOST_AUTO_TEST_CASE(routing_matches_the_cpu_reference) {
  Pair p("cuda");
  // Selections must agree exactly (random logits have margins far above double rounding); weights
  // to float rounding of the device's double exp. Grouping must be identical (a stable order).
  for (auto [E, k, rows] : {std::tuple{8, 2, 77}, std::tuple{128, 8, 300}, std::tuple{64, 6, 1}, std::tuple{5, 5, 33},
                            std::tuple{60, 4, 1000}}) {
    const auto logits = randn(static_cast<std::size_t>(rows) * E, 2.f);
    std::vector<std::vector<int>> masked(rows);
    for (int r = 0; r < rows; ++r)
      if (r % 4 == 1 && E - k >= 2) masked[r] = {r % E, (r * 3 + 1) % E};
    for (bool renorm : {true, false})
      for (bool use_mask : {false, true}) {
        BOOST_TEST_CONTEXT("E " << E << " k " << k << " rows " << rows << " renorm " << renorm << " mask " << use_mask) {
          const RouteRequest q = route_request(k, renorm, use_mask ? masked : std::vector<std::vector<int>>{});
          auto lc = p.cpu->upload(logits.data(), rows, E);
          auto lg = p.gpu->upload(logits.data(), rows, E);
          const RoutingPtr rc = p.cpu->route(*lc, q), rg = p.gpu->route(*lg, q);
          const RoutingTable &tc = rc->host(), &tg = rg->host();
          BOOST_TEST(tg.top.experts == tc.top.experts);
          BOOST_TEST(tg.expert_offsets == tc.expert_offsets);
          BOOST_TEST(tg.expert_slots == tc.expert_slots);
          CHECK_CLOSE(tg.top.weights, tc.top.weights, 1e-6, "routing weights");
        }
      }
  }
  // Exact ties: the lower expert index first, as on the CPU.
  const std::vector<float> ties = {1.f, 2.f, 2.f, 2.f, 0.5f, 0.f, 0.f, 0.f, 0.f, 0.f};
  auto tg = p.gpu->upload(ties.data(), 2, 5);
  const RoutingPtr r = p.gpu->route(*tg, route_request(2, true));
  BOOST_TEST(r->host().top.experts == std::vector<int>({1, 2, 0, 1}));
}

BOOST_AUTO_TEST_CASE(routing_errors_surface_with_layer_and_row) {
  Pair p("cuda");
  std::vector<float> logits = {0.1f, 0.2f, 0.3f, 0.4f, 1.0f, NAN, 3.0f, 4.0f};
  auto t = p.gpu->upload(logits.data(), 2, 4);
  const RoutingPtr bad = p.gpu->route(*t, route_request(2, true, {}, 7));
  try {
    bad->host();
    BOOST_ERROR("no error for a NaN logit");
  } catch (const InputError& e) {
    BOOST_TEST(std::string(e.what()).find("non-finite router logit at layer 7, row 1") != std::string::npos, e.what());
  }
  logits[5] = 2.0f;
  auto t2 = p.gpu->upload(logits.data(), 2, 4);
  const RoutingPtr few = p.gpu->route(*t2, route_request(2, true, {{}, {0, 1, 2}}, 3));
  BOOST_CHECK_THROW(few->host(), InputError);
}

BOOST_AUTO_TEST_CASE(routed_experts_match_the_cpu_reference) {
  Pair p("cuda");
  const int rows = 40, E = 8, k = 2, H = 64, I = 32;
  std::vector<HostWeight> hw;
  hw.reserve(3 * E);
  std::vector<WeightPtr> wc, wg;
  std::vector<ExpertRef> ec(E), eg(E);
  for (int e = 0; e < E; ++e) {
    hw.emplace_back("gate", std::vector<std::int64_t>{I, H}, randn(I * H, 0.1f));
    hw.emplace_back("up", std::vector<std::int64_t>{I, H}, randn(I * H, 0.1f));
    hw.emplace_back("down", std::vector<std::int64_t>{H, I}, randn(H * I, 0.1f));
    for (int j = 0; j < 3; ++j) {
      wc.push_back(p.cpu->upload_weight(hw[3 * e + j].view));
      wg.push_back(p.gpu->upload_weight(hw[3 * e + j].view));
    }
    if (e == 3) continue;  // an expert held elsewhere
    ec[e] = {wc[3 * e].get(), wc[3 * e + 1].get(), wc[3 * e + 2].get()};
    eg[e] = {wg[3 * e].get(), wg[3 * e + 1].get(), wg[3 * e + 2].get()};
  }
  const auto x = randn(rows * H), logits = randn(rows * E, 2.f);
  auto xc = p.cpu->upload(x.data(), rows, H), xg = p.gpu->upload(x.data(), rows, H);
  auto lc = p.cpu->upload(logits.data(), rows, E), lg = p.gpu->upload(logits.data(), rows, E);
  const RoutingPtr rc = p.cpu->route(*lc, route_request(k, true)), rg = p.gpu->route(*lg, route_request(k, true));
  auto oc = p.cpu->zeros(rows * k, H), og = p.gpu->zeros(rows * k, H);
  p.cpu->run_routed_experts(*xc, *rc, ec, *oc);
  p.gpu->run_routed_experts(*xg, *rg, eg, *og);
  CHECK_CLOSE(get(*p.gpu, *og), get(*p.cpu, *oc), kF32, "routed experts");
}
