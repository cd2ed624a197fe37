// GEMM efficiency of the CPU backend (a benchmark, not a test).
//
// 1. The matrix libraries on one 2048^3 float32 product (and bf16 for oneDNN): Eigen as compiled
//    (the build's -march), oneDNN with weights packed once. The best is the "practical peak".
// 2. The backend's `linear` and `run_experts` at 16, 256 and 4096 rows with real layer widths
//    (Qwen3-30B-A3B: H 2048, q_proj 4096, experts 768 wide, 128 experts top-8; Mixtral-8x7B: H 4096,
//    experts 14336 wide, 8 experts top-2), in `cpu` and `cpu-bf16`, as GFLOP/s and as a share of the
//    same precision's peak; Eigen's product as the project used it before (x * W^T, W repacked per
//    call) alongside for float32 linear.
// Time: best and median of --repeat runs (fewer past 10 s; std::chrono::steady_clock); threads:
// OMP_NUM_THREADS.
//
//   moetrace_cpu_gemm_bench [--repeat N] [--models qwen3,mixtral]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <omp.h>
#include <CLI/CLI.hpp>
#include <Eigen/Dense>

#include "backend/backend_registry.h"
#include "util/half_precision.h"

using namespace moetrace;

namespace {

using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct Timing {
  double best = 0, median = 0;
};

// Best and median of `repeat` timed runs after a warm-up; large cases stop after 10 s of runs
// (at least 2).
Timing time_it(int repeat, const std::function<void()>& f) {
  f();  // warm-up: primitive creation, page faults
  std::vector<double> t;
  double total = 0;
  for (int i = 0; i < repeat && (i < 2 || total < 10.0); ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    total += t.back();
  }
  std::sort(t.begin(), t.end());
  return {t.front(), t[t.size() / 2]};
}

std::vector<float> randn(std::size_t n, float scale) {
  std::mt19937 rng(7);
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// A bf16 checkpoint-like tensor [rows, cols].
struct HostWeight {
  std::vector<std::uint16_t> b;
  TensorView view;
  HostWeight(const std::string& name, int rows, int cols) {
    for (float x : randn(static_cast<std::size_t>(rows) * cols, 0.02f)) b.push_back(float_to_bf16(x));
    view.name = name;
    view.file = "bench";
    view.dtype = DType::BF16;
    view.shape = {rows, cols};
    view.data = reinterpret_cast<const std::byte*>(b.data());
  }
};

double gflops(double flop, double s) { return flop / s / 1e9; }

struct ModelShape {
  std::string name;
  int hidden, q_width, expert_width, experts, top_k;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"moetrace CPU GEMM efficiency benchmark"};
  int repeat = 5;
  std::vector<std::string> models = {"qwen3", "mixtral"};
  app.add_option("--repeat", repeat, "timed repeats (best and median reported)")->check(CLI::Range(1, 1000));
  app.add_option("--models", models, "qwen3 and/or mixtral")->delimiter(',');
  CLI11_PARSE(app, argc, argv);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::printf("threads (OMP_NUM_THREADS): %d\n\n", omp_get_max_threads());

  // --- 1. libraries at 2048^3 -------------------------------------------------------------------
  const int N = 2048;
  const double flop = 2.0 * N * N * N;
  const auto a = randn(static_cast<std::size_t>(N) * N, 1.f);
  double peak_f32 = 0, peak_bf16 = 0;
  std::printf("| library (2048^3) | GFLOP/s best | GFLOP/s median |\n|---|---:|---:|\n");
  {
    const RowMajor A = Eigen::Map<const RowMajor>(a.data(), N, N), B = A;
    RowMajor C(N, N);
    const Timing t = time_it(repeat, [&] { C.noalias() = A * B.transpose(); });
    std::printf("| Eigen %d.%d.%d, float32 (this build's ISA) | %.1f | %.1f |\n", EIGEN_WORLD_VERSION, EIGEN_MAJOR_VERSION,
                EIGEN_MINOR_VERSION, gflops(flop, t.best), gflops(flop, t.median));
  }
  for (const std::string mode : {"cpu", "cpu-bf16"}) {
    auto b = make_backend(mode);
    HostWeight w("model.layers.0.self_attn.q_proj.weight", N, N);
    auto dw = b->upload_weight(w.view);
    auto x = b->upload(a.data(), N, N);
    const Timing t = time_it(repeat, [&] { b->linear(*x, *dw); });
    const double g = gflops(flop, t.best);
    (mode == "cpu" ? peak_f32 : peak_bf16) = g;
    std::printf("| oneDNN, %s (packed weights, via Backend::linear) | %.1f | %.1f |\n",
                mode == "cpu" ? "float32" : "bf16 x bf16 -> float32", g, gflops(flop, t.median));
  }

  // --- 2. linear and run_experts at real widths ------------------------------------------------------
  const std::vector<ModelShape> shapes = {{"qwen3", 2048, 4096, 768, 128, 8}, {"mixtral", 4096, 4096, 14336, 8, 2}};
  std::printf("\n| model | op | rows | mode | GFLOP/s best | median | share of peak |\n|---|---|---:|---|---:|---:|---:|\n");
  for (const ModelShape& s : shapes) {
    if (std::find(models.begin(), models.end(), s.name) == models.end()) continue;
    for (const std::string mode : {"cpu", "cpu-bf16"}) {
      auto b = make_backend(mode);
      const double peak = mode == "cpu" ? peak_f32 : peak_bf16;
      HostWeight q("model.layers.0.self_attn.q_proj.weight", s.q_width, s.hidden);
      auto dq = b->upload_weight(q.view);
      // The rows' slots go round-robin to as many experts as ~1.5 GB of float32 weights allows (at most
      // 16): 16 for Qwen3, 2 for Mixtral (the machine is shared).
      const double expert_bytes = 3.0 * s.hidden * s.expert_width * 4;
      const int held = std::clamp(static_cast<int>(1.5e9 / expert_bytes), 1, std::min(s.experts, 16));
      std::vector<WeightPtr> dw;
      for (int e = 0; e < held; ++e) {
        for (int j = 0; j < 3; ++j) {  // gate, up, down; the backend holds its own copy
          const HostWeight w(j == 2 ? "experts.down_proj.weight" : "experts.gate_proj.weight",
                             j == 2 ? s.hidden : s.expert_width, j == 2 ? s.expert_width : s.hidden);
          dw.push_back(b->upload_weight(w.view));
        }
      }
      for (int rows : {16, 256, 4096}) {
        const auto xs = randn(static_cast<std::size_t>(rows) * s.hidden, 1.f);
        auto x = b->upload(xs.data(), rows, s.hidden);
        const Timing tl = time_it(repeat, [&] { b->linear(*x, *dq); });
        const double fl = 2.0 * rows * s.hidden * s.q_width;
        std::printf("| %s | linear %dx%d | %d | %s | %.1f | %.1f | %.0f%% |\n", s.name.c_str(), s.q_width, s.hidden, rows,
                    mode.c_str(), gflops(fl, tl.best), gflops(fl, tl.median), 100 * gflops(fl, tl.best) / peak);
        if (mode == "cpu") {
          const RowMajor X = Eigen::Map<const RowMajor>(xs.data(), rows, s.hidden);
          RowMajor W(s.q_width, s.hidden);
          W.setRandom();
          RowMajor Y(rows, s.q_width);
          const Timing te = time_it(repeat, [&] { Y.noalias() = X * W.transpose(); });
          std::printf("| %s | linear %dx%d | %d | Eigen (before: repacks W per call) | %.1f | %.1f | %.0f%% |\n",
                      s.name.c_str(), s.q_width, s.hidden, rows, gflops(fl, te.best), gflops(fl, te.median),
                      100 * gflops(fl, te.best) / peak);
        }
        // rows x top_k slots over `held` experts
        const int slots = rows * s.top_k;
        std::vector<ExpertTask> tasks(held);
        for (int e = 0; e < held; ++e) {
          tasks[e].gate = dw[3 * e].get();
          tasks[e].up = dw[3 * e + 1].get();
          tasks[e].down = dw[3 * e + 2].get();
        }
        for (int i = 0; i < slots; ++i) {
          ExpertTask& t = tasks[i % held];
          t.in_rows.push_back(i / s.top_k);
          t.out_rows.push_back(i);
          t.weights.push_back(0.5f);
        }
        auto out = b->zeros(slots, s.hidden);
        const Timing tx = time_it(repeat, [&] { b->run_experts(*x, tasks, *out); });
        const double fx = 2.0 * slots * 3.0 * s.hidden * s.expert_width;
        std::printf("| %s | run_experts (%d experts, %d slots) | %d | %s | %.1f | %.1f | %.0f%% |\n", s.name.c_str(), held,
                    slots, rows, mode.c_str(), gflops(fx, tx.best), gflops(fx, tx.median), 100 * gflops(fx, tx.best) / peak);
      }
    }
  }
  return 0;
}
