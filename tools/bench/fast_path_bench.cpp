// Fast path against full recomputation on a fixture model (a benchmark, not a test).
//
// For every fact of a conformance fixture: prepare the case (clean run + one noised run per noise
// sample), then evaluate a layer sweep (restore the MoE output at the final position, each layer)
// plus an expert sweep (restore each single expert at the final position, each layer), for every
// noise sample, once with PatchMode::FastPath and once with PatchMode::FullRecompute. Reports the
// layer-token steps (Engine::layer_token_steps) and the wall time (best of --repeat) of each mode,
// their ratios, and the largest difference between the two modes' contrasts.
//
//   moetrace_fast_path_bench --model DIR --fixture FILE.h5 [--repeat N]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "backend/backend.h"
#include "engine/case_tracer.h"
#include "engine/device_model.h"
#include "model/model_weights.h"
#include "results/fixture_io.h"
#include "util/error.h"

using namespace moetrace;

namespace {

struct ModeResult {
  std::uint64_t steps = 0;
  double seconds = std::numeric_limits<double>::infinity();  // best of the repeats
  std::vector<float> contrasts;
};

struct CaseRow {
  std::string fact;
  int tokens = 0;
  int runs = 0;
  ModeResult fast, full;
  double max_diff = 0;
};

ModeResult measure(CaseTracer& tracer, const std::vector<PatchedRun>& runs, PatchMode mode, int repeat) {
  ModeResult r;
  for (int i = 0; i < repeat; ++i) {
    tracer.engine().reset_steps();
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<float> c = tracer.evaluate(runs, mode);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.steps = tracer.engine().layer_token_steps();
    r.seconds = std::min(r.seconds, s);
    r.contrasts = std::move(c);
  }
  return r;
}

double ratio(double a, double b) { return b > 0 ? a / b : std::nan(""); }

void print_row(const std::string& name, int tokens, int runs, const ModeResult& fast, const ModeResult& full,
               double max_diff) {
  std::printf("| %-8s | %6s | %5d | %12llu | %12llu | %7.2fx | %10.2f | %10.2f | %7.2fx | %12.2e |\n", name.c_str(),
              tokens > 0 ? std::to_string(tokens).c_str() : "", runs, static_cast<unsigned long long>(fast.steps),
              static_cast<unsigned long long>(full.steps), ratio(full.steps, fast.steps), 1e3 * fast.seconds,
              1e3 * full.seconds, ratio(full.seconds, fast.seconds), max_diff);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"moetrace fast-path benchmark: layer sweep + expert sweep per case, fast path vs full recompute"};
  std::string model_dir, fixture;
  int repeat = 3;
  app.add_option("--model", model_dir, "model folder (config.json + safetensors)")->required()->check(CLI::ExistingDirectory);
  app.add_option("--fixture", fixture, "conformance fixture <model>.golden.h5 (prompts and noise)")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("--repeat", repeat, "timed repetitions per mode; the best is reported")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);

  try {
    ModelWeights weights = load_model(model_dir);
    const ModelConfig& c = weights.config;
    auto backend = make_cpu_backend();
    DeviceModel model = upload_model(weights, *backend);
    Engine engine(model, *backend);
    CaseTracer tracer(engine);
    const std::vector<FixtureFact> facts = read_fixture_inputs(fixture, c.hidden_size);

    std::printf("# fast path vs full recompute: %s (%s, %d layers, %d experts, top-%d), %zu facts, backend %s, best of %d\n",
                model_dir.c_str(), to_string(c.arch).c_str(), c.num_layers, c.num_experts, c.top_k, facts.size(),
                backend->name().c_str(), repeat);
    std::printf("# per case and noise sample: %d layer conditions (MoE output, final position) + %d expert conditions "
                "(one expert, final position)\n\n",
                c.num_layers, c.num_layers * c.num_experts);
    std::printf("| fact     | tokens |  runs |   steps fast |   steps full | steps x  |    fast ms |    full ms |  time x  | max abs diff |\n");
    std::printf("|----------|-------:|------:|-------------:|-------------:|---------:|-----------:|-----------:|---------:|-------------:|\n");

    std::vector<CaseRow> rows;
    for (const FixtureFact& f : facts) {
      const Prompt prompt{f.ids, f.subject_begin, f.subject_end, f.true_id, f.foil_id};
      const TracedCase tc = tracer.prepare(prompt, f.noise);
      const int last = prompt.num_tokens() - 1;
      std::vector<Condition> conditions;
      for (int l = 0; l < c.num_layers; ++l) conditions.push_back(restore_site(Site::Moe, l, {last}));
      for (int l = 0; l < c.num_layers; ++l)
        for (int e = 0; e < c.num_experts; ++e)
          conditions.push_back(restore_experts(l, {last}, ExpertSet::Listed, {e}));
      std::vector<PatchedRun> runs;
      for (int s = 0; s < static_cast<int>(tc.noised.size()); ++s)
        for (const Condition& cond : conditions) runs.push_back({&tc, s, &cond});

      CaseRow row;
      row.fact = f.group.substr(f.group.find('/') + 1);
      row.tokens = prompt.num_tokens();
      row.runs = static_cast<int>(runs.size());
      row.fast = measure(tracer, runs, PatchMode::FastPath, repeat);
      row.full = measure(tracer, runs, PatchMode::FullRecompute, repeat);
      for (std::size_t i = 0; i < runs.size(); ++i)
        row.max_diff = std::max(row.max_diff, std::abs(static_cast<double>(row.fast.contrasts[i]) - row.full.contrasts[i]));
      print_row(row.fact, row.tokens, row.runs, row.fast, row.full, row.max_diff);
      std::fflush(stdout);
      rows.push_back(std::move(row));
    }

    ModeResult fast_total, full_total;
    fast_total.seconds = full_total.seconds = 0;
    int runs_total = 0;
    double worst = 0;
    for (const CaseRow& r : rows) {
      fast_total.steps += r.fast.steps;
      full_total.steps += r.full.steps;
      fast_total.seconds += r.fast.seconds;
      full_total.seconds += r.full.seconds;
      runs_total += r.runs;
      worst = std::max(worst, r.max_diff);
    }
    print_row("total", 0, runs_total, fast_total, full_total, worst);
    std::printf("\n# steps: layer-token steps (one token through one layer); time: wall time of CaseTracer::evaluate,\n"
                "# best of %d; x: full / fast; max abs diff: largest |contrast(fast) - contrast(full)| over the runs\n",
                repeat);
  } catch (const InputError& e) {
    std::fprintf(stderr, "moetrace_fast_path_bench: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moetrace_fast_path_bench: internal error: %s\n", e.what());
    return 3;
  }
  return 0;
}
