// moetrace's side of the GPU comparison with the transformers peer (tools/bench/gpu_vs_peer.sh,
// docs/cuda.md): on a model folder (normally the random real-shaped model that
// tools/peer/transformers_peer.py saved, with its prompts.json), time per fact
//  - the layer sweep: clean + noised runs, then the MoE output restored at the sweep positions at
//    every layer (fast path), all facts' conditions batched together;
//  - the expert sweep of one layer: each clean-routed expert of the final position restored alone;
// and report TFLOP/s achieved and the FLOP floor, scaled from the bench model's layers to the real
// model's depth, in wall seconds and in process CPU seconds (the CPU comparison's measure).
// Prints one JSON object on stdout (progress on stderr). It also runs on the CPU backends
// (--backend cpu / cpu-bf16, tools/bench/cpu_vs_peer.sh); prompts.json may name a raw float32 noise
// file ("noise_file": facts x subject tokens x hidden) so that both sides add the same noise.
//
//   moetrace_gpu_sweep_bench --model DIR [--backend cuda-bf16] [--prompts DIR/prompts.json]
//       [--full-layers 48] [--facts 64] [--batch-rows 8192] [--repeats 3] [--peak-tflops 745]
#include <time.h>

#include <cstdio>
#include <cstdlib>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/backend_registry.h"
#include "engine/case_tracer.h"
#include "engine/device_model.h"
#ifdef MOETRACE_WITH_CUDA
#include "kernels/cuda_backend.h"
#endif
#include <omp.h>
#include "model/model_weights.h"
#include "util/error.h"

namespace fs = std::filesystem;
using namespace moetrace;
using Clock = std::chrono::steady_clock;

namespace {

struct Args {
  fs::path model, prompts;
  std::string backend = "cuda-bf16";
  int full_layers = 0;  // 0: from prompts.json, else the model's own depth
  int facts = 64, tokens = 16, subject_begin = 2, subject_end = 6;
  std::string positions = "";  // subject | final (default: prompts.json, else subject)
  int expert_layer = -1;       // -1: the middle layer
  int batch_rows = 8192, repeats = 3;
  double peak_tflops = 745.0, noise_multiplier = 3.0;
  std::uint64_t seed = 0;
  bool load_only = false;  // load and upload the model, print the weights held, exit (peak RSS of a load)
};

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "moetrace_gpu_sweep_bench: " << why
            << "\nusage: moetrace_gpu_sweep_bench --model DIR [--backend cuda|cuda-bf16] [--prompts FILE]\n"
               "  [--full-layers N] [--facts N] [--tokens N] [--subject B:E] [--positions subject|final]\n"
               "  [--expert-layer L] [--batch-rows N] [--repeats N] [--peak-tflops X] [--seed S] [--load-only]\n";
  std::exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) usage(k + " needs a value");
      return argv[++i];
    };
    if (k == "--model") a.model = val();
    else if (k == "--prompts") a.prompts = val();
    else if (k == "--backend") a.backend = val();
    else if (k == "--full-layers") a.full_layers = std::stoi(val());
    else if (k == "--facts") a.facts = std::stoi(val());
    else if (k == "--tokens") a.tokens = std::stoi(val());
    else if (k == "--subject") {
      const std::string s = val();
      const auto c = s.find(':');
      if (c == std::string::npos) usage("--subject B:E");
      a.subject_begin = std::stoi(s.substr(0, c));
      a.subject_end = std::stoi(s.substr(c + 1));
    } else if (k == "--positions") a.positions = val();
    else if (k == "--expert-layer") a.expert_layer = std::stoi(val());
    else if (k == "--batch-rows") a.batch_rows = std::stoi(val());
    else if (k == "--repeats") a.repeats = std::stoi(val());
    else if (k == "--peak-tflops") a.peak_tflops = std::stod(val());
    else if (k == "--noise-multiplier") a.noise_multiplier = std::stod(val());
    else if (k == "--seed") a.seed = std::stoull(val());
    else if (k == "--load-only") a.load_only = true;
    else usage("unknown argument " + k);
  }
  if (a.model.empty()) usage("--model is required");
  return a;
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// CPU time of the whole process (all threads), seconds: the comparison with the peer is in CPU time.
double process_cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Wall and CPU seconds of one phase.
struct PhaseTime {
  double wall = 0, cpu = 0;
};

class Stopwatch {
 public:
  Stopwatch() : wall0_(Clock::now()), cpu0_(process_cpu_s()) {}
  PhaseTime elapsed() const { return {seconds_since(wall0_), process_cpu_s() - cpu0_}; }

 private:
  Clock::time_point wall0_;
  double cpu0_;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? NAN : v[v.size() / 2];
}

double minimum(const std::vector<double>& v) { return v.empty() ? NAN : *std::min_element(v.begin(), v.end()); }

std::vector<double> walls(const std::vector<PhaseTime>& v) {
  std::vector<double> w;
  for (const PhaseTime& t : v) w.push_back(t.wall);
  return w;
}

// Standard deviation of the first rows of the embedding table (noise scale, as the protocol's
// embedding_std rule on a sample).
double embedding_std(const TensorView& embed) {
  TensorView part = embed;
  part.shape[0] = std::min<std::int64_t>(part.shape[0], 1024);
  const std::vector<float> v = part.to_float();
  double s = 0, s2 = 0;
  for (float x : v) s += x, s2 += static_cast<double>(x) * x;
  const double m = s / v.size();
  return std::sqrt(std::max(0.0, s2 / v.size() - m * m));
}

// FLOPs of one token through one layer (multiply-add = 2): projections, router, k experts, and
// attention against a context of `ctx` positions.
double flops_per_step(const ModelConfig& c, double ctx) {
  const double H = c.hidden_size, q = c.q_width(), kv = c.kv_width(), I = c.expert_width;
  const double proj = H * q + 2 * H * kv + q * H;
  const double router = H * c.num_experts;
  const double experts = static_cast<double>(c.top_k) * 3 * H * I;
  const double attn = 2 * ctx * q;  // scores and weighted values
  return 2 * (proj + router + experts + attn);
}

}  // namespace

int main(int argc, char** argv) try {
  const Args a = parse(argc, argv);
  ModelWeights weights = load_model(a.model);
  const ModelConfig& cfg = weights.config;
  nlohmann::json pj;
  fs::path prompts_path = a.prompts.empty() ? a.model / "prompts.json" : a.prompts;
  const bool have_prompts = fs::exists(prompts_path);
  if (have_prompts) pj = nlohmann::json::parse(std::ifstream(prompts_path));

  const int Lb = cfg.num_layers;
  const int Lf = a.full_layers > 0 ? a.full_layers : (have_prompts ? pj.value("full_layers", Lb) : Lb);
  const std::string positions = !a.positions.empty() ? a.positions : (have_prompts ? pj.value("positions", std::string("subject")) : "subject");
  const int Lx = a.expert_layer >= 0 ? a.expert_layer : (have_prompts ? pj.value("expert_layer", Lb / 2) : Lb / 2);
  const int Lxf = have_prompts ? pj.value("expert_layer_full", Lf / 2) : Lf / 2;

  // ---- prompts and noise ---------------------------------------------------------------------
  std::vector<Prompt> prompts;
  std::mt19937_64 rng(a.seed);
  if (have_prompts) {
    for (const auto& p : pj.at("prompts")) {
      Prompt q;
      q.ids = p.at("ids").get<std::vector<int>>();
      q.subject_begin = p.at("subject_begin");
      q.subject_end = p.at("subject_end");
      q.true_id = p.at("true_id");
      q.foil_id = p.at("foil_id");
      prompts.push_back(std::move(q));
      if (static_cast<int>(prompts.size()) == a.facts) break;
    }
  } else {
    std::uniform_int_distribution<int> tok(0, cfg.vocab_size - 1);
    for (int f = 0; f < a.facts; ++f) {
      Prompt q;
      for (int t = 0; t < a.tokens; ++t) q.ids.push_back(tok(rng));
      q.subject_begin = a.subject_begin;
      q.subject_end = a.subject_end;
      q.true_id = tok(rng);
      q.foil_id = tok(rng);
      prompts.push_back(std::move(q));
    }
  }
  const int F = static_cast<int>(prompts.size());
  const double sigma = have_prompts && pj.contains("noise_sigma") ? pj["noise_sigma"].get<double>()
                                                                   : a.noise_multiplier * embedding_std(weights.embed);
  std::vector<std::vector<float>> noise(F);
  std::normal_distribution<float> nd(0.f, static_cast<float>(sigma));
  std::ifstream noise_file;
  if (have_prompts && pj.contains("noise_file")) {
    noise_file.open(prompts_path.parent_path() / pj["noise_file"].get<std::string>(), std::ios::binary);
    if (!noise_file) usage("cannot open the noise file named in " + prompts_path.string());
  }
  for (int f = 0; f < F; ++f) {
    noise[f].resize(static_cast<std::size_t>(prompts[f].subject_end - prompts[f].subject_begin) * cfg.hidden_size);
    if (noise_file.is_open()) {
      noise_file.read(reinterpret_cast<char*>(noise[f].data()), static_cast<std::streamsize>(noise[f].size() * 4));
      if (!noise_file) usage("the noise file is shorter than the prompts need");
    } else {
      for (float& x : noise[f]) x = nd(rng);
    }
  }

  // ---- model on the device -----------------------------------------------------------------------
  auto backend = make_backend(a.backend);
  auto t0 = Clock::now();
  DeviceModel model = upload_model(weights, *backend);
  const double upload_s = seconds_since(t0);
  std::cerr << "uploaded " << backend->weight_bytes() / 1e9 << " GB of weights in " << upload_s << " s ("
            << a.backend << ", " << Lb << " layers; scaled to " << Lf << ")\n";
  if (a.load_only) {  // for the peak RSS of a load alone (tools/bench/cpu_vs_peer.sh measures it with time -v)
    nlohmann::json j{{"backend", a.backend}, {"weight_bytes", backend->weight_bytes()}, {"upload_s", upload_s}};
    std::ifstream status("/proc/self/status");  // resident memory after the load, by kind (Linux)
    for (std::string line; std::getline(status, line);)
      for (const char* key : {"VmHWM", "VmRSS", "RssAnon", "RssFile"})
        if (line.rfind(std::string(key) + ":", 0) == 0) j[std::string(key) + "_kB"] = std::stoll(line.substr(line.find(':') + 1));
    std::cout << j.dump() << "\n";
    return 0;
  }
  Engine engine(model, *backend);
  CaseTracer tracer(engine, a.batch_rows);

  auto sweep_positions = [&](const Prompt& p) {
    std::vector<int> v;
    if (positions == "final") v.push_back(p.num_tokens() - 1);
    else
      for (int t = p.subject_begin; t < p.subject_end; ++t) v.push_back(t);
    return v;
  };

  // ---- timed phases --------------------------------------------------------------------------
  std::vector<PhaseTime> t_prepare, t_layer, t_expert;
  std::uint64_t steps_prepare = 0, steps_layer = 0, steps_expert = 0;
  std::size_t layer_runs = 0, expert_runs = 0;
  nlohmann::json sample;
  for (int rep = 0; rep <= a.repeats; ++rep) {  // rep 0 is the warm-up
    engine.reset_steps();
    Stopwatch watch;
    // Clean and noised runs of all facts, each as one engine call (as the pipeline prepares a chunk
    // of cases, `[execution] chunk`).
    std::vector<TracedCase> cases(F);
    {
      std::vector<StreamSpec> specs(F);
      for (int f = 0; f < F; ++f) {
        cases[f].prompt = prompts[f];
        cases[f].noise = {noise[f]};
        specs[f].prompt = &cases[f].prompt;
        specs[f].record = RecordLevel::Full;
      }
      std::vector<StreamOutput> clean = engine.run(specs);
      for (int f = 0; f < F; ++f) {
        cases[f].clean = std::move(clean[f]);
        specs[f] = StreamSpec{};
        specs[f].prompt = &cases[f].prompt;
        specs[f].start_pos = prompts[f].subject_begin;
        specs[f].base = specs[f].start_pos > 0 ? cases[f].clean.record.get() : nullptr;
        specs[f].noise = &cases[f].noise[0];
        specs[f].record = RecordLevel::Base;
      }
      std::vector<StreamOutput> noised = engine.run(specs);
      for (int f = 0; f < F; ++f) cases[f].noised.push_back(std::move(noised[f]));
    }
    const PhaseTime tp = watch.elapsed();
    steps_prepare = engine.layer_token_steps();

    std::vector<Condition> lconds;
    lconds.reserve(static_cast<std::size_t>(F) * Lb);
    for (int f = 0; f < F; ++f)
      for (int l = 0; l < Lb; ++l) lconds.push_back(restore_site(Site::Moe, l, sweep_positions(prompts[f])));
    std::vector<PatchedRun> runs;
    for (int f = 0; f < F; ++f)
      for (int l = 0; l < Lb; ++l) runs.push_back({&cases[f], 0, &lconds[static_cast<std::size_t>(f) * Lb + l]});
    engine.reset_steps();
    watch = Stopwatch();
    const std::vector<float> dl = tracer.evaluate(runs, PatchMode::FastPath);
    const PhaseTime tl = watch.elapsed();
    steps_layer = engine.layer_token_steps();
    layer_runs = runs.size();

    std::vector<Condition> econds;
    std::vector<int> econd_fact;
    for (int f = 0; f < F; ++f) {
      const int last = prompts[f].num_tokens() - 1;
      const Routing& r = cases[f].clean.record->layers[Lx].routing;
      for (int j = 0; j < cfg.top_k; ++j) {
        econds.push_back(restore_experts(Lx, {last}, ExpertSet::Listed, {r.expert(last, j)}));
        econd_fact.push_back(f);
      }
    }
    runs.clear();
    for (std::size_t i = 0; i < econds.size(); ++i) runs.push_back({&cases[econd_fact[i]], 0, &econds[i]});
    engine.reset_steps();
    watch = Stopwatch();
    const std::vector<float> de = tracer.evaluate(runs, PatchMode::FastPath);
    const PhaseTime te = watch.elapsed();
    steps_expert = engine.layer_token_steps();
    expert_runs = runs.size();

    std::cerr << (rep == 0 ? "warm-up" : "repeat " + std::to_string(rep)) << ": prepare " << tp.wall << " s (CPU " << tp.cpu
              << " s), layer sweep " << tl.wall << " s (CPU " << tl.cpu << " s, " << layer_runs
              << " runs), expert sweep " << te.wall << " s (CPU " << te.cpu << " s, " << expert_runs << " runs)\n";
    if (rep == 0) {
      sample["clean_contrast_fact0"] = cases[0].clean.contrast;
      sample["noised_contrast_fact0"] = cases[0].noised[0].contrast;
      sample["layer_sweep_contrasts_fact0"] = std::vector<float>(dl.begin(), dl.begin() + Lb);
      sample["expert_sweep_contrasts_fact0"] = std::vector<float>(de.begin(), de.begin() + cfg.top_k);
      if (F > 1) sample["layer_sweep_contrasts_fact1"] = std::vector<float>(dl.begin() + Lb, dl.begin() + 2 * Lb);
      continue;
    }
    t_prepare.push_back(tp);
    t_layer.push_back(tl);
    t_expert.push_back(te);
  }

  // ---- scaling to full depth, FLOPs --------------------------------------------------------------
  const double tp = median(walls(t_prepare)), tl = median(walls(t_layer)), te = median(walls(t_expert));
  const double depth = static_cast<double>(Lf) / Lb;
  // Fast-path work of a layer sweep grows as sum_l (L - l) = L(L+1)/2; of one layer's expert sweep
  // as the layers after it; clean and noised runs linearly.
  const double layer_scale = (static_cast<double>(Lf) * (Lf + 1)) / (static_cast<double>(Lb) * (Lb + 1));
  const double expert_scale = static_cast<double>(Lf - Lxf) / std::max(1, Lb - Lx);
  const double T = prompts[0].num_tokens();
  const double fps = flops_per_step(cfg, T);
  const double fl_prepare = fps * steps_prepare, fl_layer = fps * steps_layer, fl_expert = fps * steps_expert;
  const double peak = a.peak_tflops * 1e12;

  // Per fact at full depth, for every repeat, in wall and in CPU seconds; then median and min.
  std::vector<double> layer_wall, layer_cpu, expert_wall, expert_cpu;
  for (std::size_t r = 0; r < t_prepare.size(); ++r) {
    const PhaseTime& p = t_prepare[r];
    layer_wall.push_back((p.wall * depth + t_layer[r].wall * layer_scale) / F);
    layer_cpu.push_back((p.cpu * depth + t_layer[r].cpu * layer_scale) / F);
    expert_wall.push_back((p.wall * depth + t_expert[r].wall * expert_scale) / F);
    expert_cpu.push_back((p.cpu * depth + t_expert[r].cpu * expert_scale) / F);
  }
  const double layer_fact_s = median(layer_wall), expert_fact_s = median(expert_wall);
  const double layer_fact_flops = (fl_prepare * depth + fl_layer * layer_scale) / F;
  const double expert_fact_flops = (fl_prepare * depth + fl_expert * expert_scale) / F;

  nlohmann::json out;
  out["side"] = "moetrace";
  out["backend"] = a.backend;
  out["model"] = a.model.string();
  out["model_type"] = cfg.model_type;
  out["bench_layers"] = Lb;
  out["full_layers"] = Lf;
  out["facts"] = F;
  out["tokens"] = T;
  out["positions"] = positions;
  out["expert_layer"] = Lx;
  out["batch_rows"] = a.batch_rows;
  out["repeats"] = a.repeats;
  out["weight_bytes"] = backend->weight_bytes();
  out["weight_bytes_full_depth_estimate"] =
      static_cast<double>(backend->weight_bytes()) * 1.0;  // refined below
#ifdef MOETRACE_WITH_CUDA
  out["activation_pool_peak_bytes"] = a.backend.rfind("cuda", 0) == 0 ? cuda::pool_peak_bytes(*backend) : 0;
#else
  out["activation_pool_peak_bytes"] = 0;
#endif
  out["threads"] = omp_get_max_threads();
  out["upload_s"] = upload_s;
  out["measured"] = {{"prepare_s", tp},           {"layer_sweep_s", tl},          {"expert_sweep_s", te},
                     {"layer_sweep_runs", layer_runs}, {"expert_sweep_runs", expert_runs},
                     {"steps_prepare", steps_prepare}, {"steps_layer_sweep", steps_layer},
                     {"steps_expert_sweep", steps_expert},
                     {"tflops_layer_sweep", (fl_prepare + fl_layer) / (tp + tl) / 1e12},
                     {"tflops_expert_sweep", (fl_prepare + fl_expert) / (tp + te) / 1e12}};
  out["per_fact_full_depth"] = {{"layer_sweep_s", layer_fact_s},
                                {"expert_sweep_s", expert_fact_s},
                                {"layer_sweep_s_min", minimum(layer_wall)},
                                {"expert_sweep_s_min", minimum(expert_wall)},
                                {"layer_sweep_cpu_s", median(layer_cpu)},
                                {"expert_sweep_cpu_s", median(expert_cpu)},
                                {"layer_sweep_cpu_s_min", minimum(layer_cpu)},
                                {"expert_sweep_cpu_s_min", minimum(expert_cpu)},
                                {"layer_sweep_flop", layer_fact_flops},
                                {"expert_sweep_flop", expert_fact_flops},
                                {"layer_sweep_flop_floor_s", layer_fact_flops / peak},
                                {"expert_sweep_flop_floor_s", expert_fact_flops / peak}};
  out["peak_tflops"] = a.peak_tflops;
  out["sample"] = sample;
  // Weights at full depth: per-layer bytes times the real depth plus the rest.
  {
    double per_layer = 0;
    std::size_t shared = backend->weight_bytes();
    (void)shared;
    const double H = cfg.hidden_size, V = cfg.vocab_size;
    const bool bf16 = a.backend.rfind("cuda-bf16", 0) == 0 || a.backend == "cpu-bf16";
    const double bytes_per = bf16 ? 2.0 : 4.0;
    const double embed = (cfg.tie_word_embeddings ? 1 : 2) * V * H * bytes_per + H * 4;
    per_layer = (static_cast<double>(backend->weight_bytes()) - embed) / Lb;
    out["weight_bytes_full_depth_estimate"] = embed + per_layer * Lf;
  }
  std::cout << out.dump(2) << std::endl;
  std::cerr << "per fact at " << Lf << " layers: layer sweep " << layer_fact_s << " s (CPU " << median(layer_cpu)
            << " s), expert sweep " << expert_fact_s << " s (CPU " << median(expert_cpu) << " s); FLOP floors " << layer_fact_flops / peak << " s / " << expert_fact_flops / peak << " s\n";
  return 0;
} catch (const std::exception& e) {
  std::cerr << "moetrace_gpu_sweep_bench: " << e.what() << "\n";
  return 1;
}
