// `moetrace plan`: a study's engine work, memory, time and Slurm allocation, known before it is
// submitted (docs/distribution.md, "Planning a study"). Reads the config, the model's config.json
// and tokenizer, the data and this machine; never loads weights.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <nlohmann/json.hpp>
#include <toml++/toml.h>

#include "backend/backend_registry.h"
#include "cli/commands.h"
#include "engine/calibration.h"
#include "engine/device_model.h"
#include "model/model_config.h"
#include "model/model_cost.h"
#include "protocols/allocation.h"
#include "cli/command_session.h"
#include "comm/single_rank_communicator.h"
#include "engine/case_tracer.h"
#include "protocols/case_scan.h"
#include "protocols/counterfact.h"
#include "protocols/localize_config.h"
#include "protocols/localize_inputs.h"
#include "protocols/localize_work_plan.h"
#include "results/localize_results.h"
#include "tokenizer/tokenizer.h"
#include "protocols/noise_scale.h"
#include "protocols/prepared_cases.h"
#include "protocols/row_executor.h"
#include "results/results_file.h"
#include "protocols/run_config.h"
#include "protocols/run_work_plan.h"
#include "protocols/study_plan.h"
#include "protocols/tokenized_case_builder.h"
#include "results/run_outcome.h"
#include "util/error.h"

namespace moetrace::cli {
namespace {

enum class PlanFormat { Text, Json };

struct PlanOptions {
  std::string config;
  std::string from;          // --from RESULTS.h5: the model's decisions of a run of this config
  std::string backend;       // --backend: instead of the config's
  int ranks = 1, ep = 1;     // --ranks N --ep R
  double keep_rate = -1;     // --keep-rate: assumed share of scanned records that pass the filter
  int sample = 0;            // --sample S: scan the first S records with the model for the keep rate
  std::string format = "text";
  std::string cluster;       // --cluster FILE: a cluster description (configs/clusters/)
  int max_nodes = 0;         // --nodes: at most this many nodes (0: the cluster's)
  double margin = 0.25;      // --margin: --time and --mem headroom
  bool no_store = false;     // --no-weight-store: every rank loads its own copy
  std::vector<int> scaling;  // --scaling N,...: ranks of the scaling curve
  bool calibrate = false;    // --calibrate: measure this node's rates now and keep them
  double calibration_s = 60; // --calibration-seconds
  std::string rates;         // --rates FILE (default: $MOETRACE_RATES or ~/.cache/moetrace/rates.json)
  int threads = 0;           // --threads: OpenMP threads of a rank (default: this process's)
  std::string gpu;           // --gpu h100|h200|a100: the GPU cost model for cuda backends
};

// A rank of this node whose weights exceed the streamer's budget (with a weight store; the same rule
// as the run, engine/device_model.h) keeps the embeddings, the read-out and the first layers that fit
// resident and reads the other layers again at every engine call (engine/weight_streamer.h).
struct Streaming {
  int resident_layers = 0, streamed_layers = 0;
  double layer_bytes = 0, resident_bytes = 0;  // resident: what stays, plus two layers in flight
  double bytes_per_call() const { return streamed_layers * layer_bytes; }
};
// Streamed layers are read back from the page cache or disk at about this rate (the 48-layer run on
// this VM: 428 GB in 671 s; docs/distribution.md "Predicted against measured").
constexpr double kStreamBytesPerS = 0.64e9;

// What a plan prints: the profile and how its numbers were obtained.
struct Plan {
  std::string config, decisions;
  StudyProfile profile;
  int ranks = 1, ep = 1;
  double process_bytes = 0;  // this process's peak RSS once the data and tokenizer are read
  std::optional<Allocation> allocation;
  std::vector<ScalingPoint> curve;
  std::optional<Prediction> here;  // --ranks N --ep R on this node
  double mean_context = 16;        // mean prompt tokens (attention FLOPs)
  std::string rates_note;          // why no time is predicted
  double calibration_seconds = 0;  // what the rates cost to measure
  ModelConfig model;
  std::filesystem::path model_path;
  bool weight_store = false;       // the config names a weight store
  bool startup_from_store = false; // the startup reads a weight store (else packs the checkpoint)
  bool cost_model = false;         // the rates are the GPU cost model's, not this node's
  std::optional<Streaming> streaming;  // this node streams the rank's weights (larger than memory)
};

std::optional<Streaming> streaming_here(const StudyProfile& p, const ModelConfig& m, int ep, bool store) {
  const double weights = static_cast<double>(p.weights.replicated) + static_cast<double>(p.weights.experts) / ep;
  const double budget = static_cast<double>(resident_weight_budget());
  if (!store || weights <= budget) return std::nullopt;
  const double ends = static_cast<double>(weight_value_bytes(p.backend)) * m.vocab_size * m.hidden_size *
                      (m.tie_word_embeddings ? 1 : 2);  // embeddings and read-out
  Streaming s;
  s.layer_bytes = (weights - ends) / m.num_layers;
  s.resident_layers = std::clamp(static_cast<int>((budget - ends) / s.layer_bytes), 0, m.num_layers);
  s.streamed_layers = m.num_layers - s.resident_layers;
  s.resident_bytes = ends + (s.resident_layers + 2) * s.layer_bytes;
  return s;
}

// What a job pays before its first engine call (measured on this VM, docs/weights.md and
// docs/distribution.md "Predicted against measured"): a weight store read cold (about 1 GB/s from a
// local or shared file system), or the checkpoint packed (0.1 GB/s: 5.3 GB in 53 s) and hashed for
// the provenance (0.9 GB/s; a store carries the hashes).
constexpr double kStoreReadBytesPerS = 1e9, kPackBytesPerS = 1e8, kHashBytesPerS = 9e8;

double startup_seconds(const StudyProfile& p, const std::filesystem::path& model_dir, bool store) {
  const double held = static_cast<double>(p.weights.replicated + p.weights.experts);
  if (store) return held / kStoreReadBytesPerS;
  double checkpoint = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(model_dir, ec))
    if (e.path().extension() == ".safetensors") checkpoint += static_cast<double>(e.file_size(ec));
  if (checkpoint == 0) checkpoint = held * 2 / weight_value_bytes(p.backend);  // no checkpoint here: its bf16 size
  return checkpoint / kPackBytesPerS + checkpoint / kHashBytesPerS;
}

// The run holds what the plan holds (libraries, tokenizer, records, their prompts) before it loads
// weights: this process's own peak RSS stands for that part of the run's.
double peak_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) * 1024.0;
}

// --sample S: the case scan of the first S records in scan order, with the model (the only part of a
// plan that loads weights), gives the keep rate of the case filter.
RunWorkAssumptions sampled_keep_rate(RunConfig config, const std::vector<CounterFactRecord>& records, int sample) {
  config.max_records = sample;
  config.num_cases = 0;
  SingleRankCommunicator world;
  CommandSession session(world, {config.model_path, config.backend, config.weight_store, 1});
  const TokenizedCaseBuilder builder(config, session.model_config());
  const double sigma = noise_sigma_base(config, session.backend(), session.engine().model(), builder, records);
  CaseTracer tracer(session.engine(), config.batch_rows);
  PreparedCases prepared(config, tracer, sigma, 0);
  const CaseScanner scanner(config, builder, prepared, sigma);
  ResultsFile scratch("plan-sample.h5", ResultsFile::Mode::Scratch);
  LocalRowExecutor executor(scratch, config.chunk_tokens, config.progress_every_s, [] {});
  const ScanResult scan = scanner.scan(records, {config.noise_multiplier, config.filter, config.split_seed}, executor);
  int filtered = 0;
  for (const auto& [reason, count] : scan.skipped)
    if (reason.rfind("filtered", 0) == 0) filtered += count;
  const int scanned = static_cast<int>(scan.cases.size()) + filtered;
  if (scanned == 0) fail_input("--sample {}: none of the first {} records builds into a prompt", sample, sample);
  RunWorkAssumptions a;
  a.keep_rate = static_cast<double>(scan.cases.size()) / scanned;
  a.keep_rate_source = fmt::format("estimated: {} of {} sampled records ({:.1f}%) pass the {} filter (--sample {})",
                                   scan.cases.size(), scanned, 100 * a.keep_rate,
                                   config.filter == FilterKind::Strict ? "strict" : "relaxed", sample);
  return a;
}

bool is_localize_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail_input("{}: cannot read the config", path);
  try {
    const toml::table t = toml::parse(in, path);
    return t.contains("ask") || t.contains("contrast");
  } catch (const toml::parse_error& e) {
    fail_input("{}: not a valid TOML config: {}", path, e.description());
  }
}

Plan plan_run(const PlanOptions& o) {
  RunConfig config = load_run_config(o.config);
  if (!o.backend.empty()) config.backend = o.backend;
  check_backend_name(config.backend, o.backend.empty() ? config.source_path.string() + ": [model] backend" : "--backend");
  check_run_inputs(config);
  const ModelConfig model = load_model_config(config.model_path);
  const std::vector<CounterFactRecord> records = read_counterfact(config.counterfact_path);
  const TokenizedCaseBuilder builder(config, model);
  std::optional<RunOutcome> outcome;
  if (!o.from.empty()) {
    std::vector<double> multipliers = config.robust_noise_multipliers;
    multipliers.push_back(config.noise_multiplier);
    outcome = read_run_outcome(o.from, multipliers);
    if (outcome->config_text != config.source_text)
      fail_input("{}: written by another config than {} (--from must be a results file of this config)", o.from, o.config);
  }
  RunWorkAssumptions assume;
  if (o.sample > 0 && !outcome && config.case_ids_path.empty()) assume = sampled_keep_rate(config, records, o.sample);
  if (o.keep_rate >= 0) {
    assume.keep_rate = o.keep_rate;
    assume.keep_rate_source = fmt::format("assumed: {:.3g} of the scanned records pass the filter (--keep-rate)", o.keep_rate);
  }
  const RunWorkPlan work = plan_run_work(config, model, records, builder, outcome ? &*outcome : nullptr, assume);
  Plan p;
  p.config = o.config;
  p.profile = run_study_profile(config, model, config.model_path.string(), config.backend, work);
  p.process_bytes = peak_rss_bytes();
  p.decisions = outcome ? "the model's decisions read from " + o.from : "the model's decisions assumed (see the notes)";
  p.ranks = o.ranks;
  p.ep = o.ep;
  p.model = model;
  p.mean_context = work.mean_prompt_tokens;
  p.model_path = config.model_path;
  p.weight_store = !config.weight_store.empty();
  return p;
}

// The largest engine call's token rows (at its first layer: the mean rows of its layers at most).
int max_call_rows(const std::vector<StageProfile>& stages) {
  double rows = 0;
  for (const StageProfile& s : stages)
    for (const CallShape& c : s.work.calls) rows = std::max(rows, c.rows());
  return static_cast<int>(std::ceil(rows));
}

Plan plan_localize(const PlanOptions& o) {
  if (o.sample > 0 || o.keep_rate >= 0) fail_input("--sample and --keep-rate apply to `moetrace run` configs, not {}", o.config);
  LocalizeConfig config = load_localize_config(o.config);
  if (!o.backend.empty()) config.backend = o.backend;
  check_backend_name(config.backend, o.backend.empty() ? config.source_path.string() + ": [model] backend" : "--backend");
  check_localize_inputs(config);
  const ModelConfig model = load_model_config(config.model_path);
  const Tokenizer tokenizer = Tokenizer::from_path(config.tokenizer_path);
  fit_localize_config_to_model(config, model, tokenizer);
  localize::QuestionSet questions = read_localize_questions(config, config.questions_path, "questions");
  screen_localize_questions(config, model, tokenizer, questions, config.questions_path);
  std::optional<localize::QuestionSet> unrelated;
  if (!config.unrelated_path.empty()) {
    unrelated = read_localize_questions(config, config.unrelated_path, "unrelated");
    screen_localize_questions(config, model, tokenizer, *unrelated, config.unrelated_path);
  }
  std::optional<LocalizeDecisions> decisions;
  if (!o.from.empty()) {
    decisions = read_localize_decisions(o.from);
    if (decisions->config_text != config.source_text)
      fail_input("{}: written by another config than {} (--from must be a results file of this config)", o.from, o.config);
  }
  Plan p;
  p.config = o.config;
  p.ranks = o.ranks;
  p.ep = o.ep;
  p.model = model;
  StudyProfile& sp = p.profile;
  sp.protocol = "localize";
  sp.model = config.model_path.string();
  sp.backend = config.backend;
  sp.layers = model.num_layers;
  sp.experts = model.num_experts;
  sp.top_k = model.top_k;
  sp.hidden = model.hidden_size;
  sp.stages = plan_localize_work(config, model, tokenizer, questions, unrelated ? &*unrelated : nullptr,
                                 decisions ? &*decisions : nullptr);
  sp.weights = model_weight_bytes(model, config.backend);
  sp.activation_bytes = activation_bytes_per_row(model) * static_cast<std::uint64_t>(max_call_rows(sp.stages));
  constexpr std::uint64_t kPairBytes = 64;  // a pair's ids and decoded text, stored
  const std::uint64_t pairs = questions.questions.size() * questions.languages.size();
  sp.results_bytes = estimate_results_bytes(localize_result_tables(config, model, sp.stages), pairs * kPairBytes, 0, 0.46);
  sp.exchange_bytes_per_step = 0.5 * model.top_k * model.hidden_size * sizeof(float);
  p.process_bytes = peak_rss_bytes();
  p.model_path = config.model_path;
  p.weight_store = !config.weight_store.empty();
  p.decisions = decisions ? "the model's decodings read from " + o.from : "the model's decodings assumed (see the notes)";
  double tokens = 0, calls = 0;
  for (const StageProfile& s : sp.stages)
    for (const CallShape& c : s.work.calls) tokens += c.rows(), ++calls;
  p.mean_context = calls > 0 ? std::max(1.0, tokens / calls) : 16;
  return p;
}

std::string gib(double bytes) {
  if (bytes >= 1024.0 * 1024 * 1024) return fmt::format("{:.2f} GiB", bytes / (1024.0 * 1024 * 1024));
  if (bytes >= 1024.0 * 1024) return fmt::format("{:.1f} MiB", bytes / (1024.0 * 1024));
  return fmt::format("{:.1f} KiB", bytes / 1024.0);
}

// Memory of one rank of an EP group of R: replicated weights, its share of the experts, a chunk's
// activations and records, the prepared-case cache, and the process itself.
struct RankMemory {
  double weights = 0, activations = 0, cache = 0, process = 0;
  double total() const { return weights + activations + cache + process; }
};

// What the engine adds to a process before any tensor of the study: oneDNN's kernels and scratch
// pads, OpenMP stacks, malloc arenas (measured: the demo's run at 2 threads, docs/distribution.md).
constexpr double kEngineBytes = 96.0 * 1024 * 1024;

RankMemory rank_memory(const StudyProfile& p, int ep, double process_bytes, const std::optional<Streaming>& streaming) {
  RankMemory m;
  m.weights = streaming ? streaming->resident_bytes
                        : static_cast<double>(p.weights.replicated) + static_cast<double>(p.weights.experts) / ep;
  m.activations = static_cast<double>(p.activation_bytes);
  m.cache = static_cast<double>(p.prepared_cache_bytes);
  m.process = process_bytes + kEngineBytes;
  return m;
}

nlohmann::json stage_json(const StageProfile& s) {
  return {{"name", s.name}, {"cases", s.cases}, {"conditions", s.conditions}, {"chunks", s.chunks},
          {"engine_calls", s.work.engine_calls}, {"layer_token_steps", s.work.steps()},
          {"prepare_steps", s.work.prepare_steps}, {"condition_steps", s.work.condition_steps},
          {"flops", s.flops}, {"seconds", s.seconds}, {"estimate", s.estimate}, {"note", s.note}};
}

StageProfile total_of(const StudyProfile& p) {
  StageProfile t;
  t.name = "total";
  for (const StageProfile& s : p.stages) {
    t.cases = std::max(t.cases, s.cases);
    t.conditions += s.conditions;
    t.chunks += s.chunks;
    t.work.engine_calls += s.work.engine_calls;
    t.work.prepare_steps += s.work.prepare_steps;
    t.work.condition_steps += s.work.condition_steps;
    t.flops += s.flops;
    t.seconds += s.seconds;
    t.estimate = t.estimate || s.estimate;
  }
  return t;
}

nlohmann::json plan_json(const Plan& plan) {
  const StudyProfile& p = plan.profile;
  nlohmann::json j;
  j["config"] = plan.config;
  j["protocol"] = p.protocol;
  j["model"] = {{"name", p.model}, {"layers", p.layers}, {"experts", p.experts}, {"top_k", p.top_k}, {"hidden", p.hidden}};
  j["backend"] = p.backend;
  j["decisions"] = plan.decisions;
  j["stages"] = nlohmann::json::array();
  for (const StageProfile& s : p.stages) j["stages"].push_back(stage_json(s));
  j["total"] = stage_json(total_of(p));
  j["startup_seconds"] = p.startup_seconds;
  j["rates"] = {{"source", p.rates_source}, {"threads", p.calibrated_threads}, {"missing", plan.rates_note},
                {"calibration_seconds", plan.calibration_seconds}};
  if (plan.here) j["this_node"] = {{"ranks", plan.ranks}, {"ep", plan.ep}, {"threads", p.calibrated_threads},
                                   {"seconds", plan.here->seconds}, {"efficiency", plan.here->efficiency}};
  const RankMemory m = rank_memory(p, plan.ep, plan.process_bytes, plan.streaming);
  j["memory"] = {{"ep", plan.ep},
                 {"weights_replicated_bytes", p.weights.replicated},
                 {"weights_experts_bytes", p.weights.experts},
                 {"rank_weights_bytes", m.weights},
                 {"rank_activation_bytes", m.activations},
                 {"rank_prepared_cache_bytes", m.cache},
                 {"rank_process_bytes", m.process},
                 {"rank_total_bytes", m.total()},
                 {"streamed_layers", plan.streaming ? plan.streaming->streamed_layers : 0},
                 {"streamed_bytes_per_call", plan.streaming ? plan.streaming->bytes_per_call() : 0.0},
                 {"results_file_bytes", p.results_bytes}};
  if (plan.allocation) j["allocation"] = allocation_json(*plan.allocation, plan.curve);
  return j;
}

void print_text(const Plan& plan) {
  const StudyProfile& p = plan.profile;
  fmt::print("moetrace plan: {} ({} protocol)\n", plan.config, p.protocol);
  fmt::print("  model {}: {} layers, {} experts (top {}), hidden {}; backend {}\n", p.model, p.layers, p.experts,
             p.top_k, p.hidden, p.backend);
  fmt::print("  counts: {}\n\n", plan.decisions);
  fmt::print("Work, as one EP group runs the whole study (the run's `engine work` line reports the same totals):\n");
  fmt::print("  {:<36} {:>9} {:>12} {:>8} {:>12} {:>16} {:>14} {:>14} {:>10} {:>10}\n", "stage", "cases", "conditions",
             "chunks", "engine calls", "layer-token steps", "preparing", "in conditions", "TFLOP", "seconds");
  auto row = [](const StageProfile& s) {
    fmt::print("  {:<36} {:>9} {:>12} {:>8} {:>12} {:>16} {:>14} {:>14} {:>10.3f} {:>10.1f}\n", (s.estimate ? "~ " : "") + s.name,
               s.cases, s.conditions, s.chunks, s.work.engine_calls, s.work.steps(), s.work.prepare_steps,
               s.work.condition_steps, s.flops / 1e12, s.seconds);
  };
  for (const StageProfile& s : p.stages) row(s);
  row(total_of(p));
  bool notes = false;
  for (const StageProfile& s : p.stages)
    if (s.estimate && !notes) {
      fmt::print("  ~ an estimate: {}. A results file of this config (--from) makes every count exact.\n", s.note);
      notes = true;
    }
  if (plan.rates_note.empty() && plan.cost_model)
    fmt::print("  seconds: one GPU, from the {}\n", p.rates_source);
  else if (plan.rates_note.empty())
    fmt::print("  seconds: one rank at {} threads, from {} (measuring them cost {:.0f} s)\n", p.calibrated_threads,
               p.rates_source, plan.calibration_seconds);
  else
    fmt::print("  seconds: not predicted: {}\n", plan.rates_note);
  fmt::print("  startup per job: {:.0f} s ({}; not engine work)\n", p.startup_seconds,
             plan.startup_from_store ? "the weight store read cold" : "the checkpoint packed and hashed");
  if (plan.here)
    fmt::print("  wall on this node with {} rank(s), --ep {}, {} thread(s) each: {:.1f} s (engine work and the startup; "
               "statistics and results writes come on top)\n", plan.ranks, plan.ep, p.calibrated_threads, plan.here->seconds);
  const RankMemory m = rank_memory(p, plan.ep, plan.process_bytes, plan.streaming);
  fmt::print("\nMemory per rank (EP group of {}):\n", plan.ep);
  fmt::print("  weights            {:>12}  (replicated {}, experts {} / {})\n", gib(m.weights),
             gib(static_cast<double>(p.weights.replicated)), gib(static_cast<double>(p.weights.experts)), plan.ep);
  if (plan.streaming)
    fmt::print("                                   larger than this node's budget ({}): layers 0-{} resident, {} layers "
               "({}) read again at every engine call (in the seconds above at {:.2f} GB/s)\n",
               gib(static_cast<double>(resident_weight_budget())), plan.streaming->resident_layers - 1,
               plan.streaming->streamed_layers, gib(plan.streaming->bytes_per_call()), kStreamBytesPerS / 1e9);
  fmt::print("  activations        {:>12}  (the largest engine call and a chunk's prepared cases)\n", gib(m.activations));
  fmt::print("  prepared cases     {:>12}  (the cache at its fullest)\n", gib(m.cache));
  fmt::print("  process            {:>12}  (libraries, tokenizer, data: this plan's own peak RSS; the engine's scratch)\n", gib(m.process));
  fmt::print("  peak RSS           {:>12}\n", gib(m.total()));
  fmt::print("\nResults file: {} on disk (the writing rank)\n", gib(static_cast<double>(p.results_bytes)));
  if (plan.allocation) fmt::print("\n{}", allocation_text(*plan.allocation, plan.curve));
}

// This node as a cluster of one (its cores and memory; ranks talk through shared memory): the wall
// time of `--ranks N --ep R` here.
ClusterSpec this_node() {
  ClusterSpec c;
  c.name = "this node";
  c.nodes = 1;
  c.cores_per_node = static_cast<int>(std::max(1L, sysconf(_SC_NPROCESSORS_ONLN)));
  c.memory_gib_per_node = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGESIZE)) /
                          (1024.0 * 1024 * 1024);
  c.intra_node_gbps = 80;  // shared-memory MPI, about 10 GB/s
  c.inter_node_gbps = 80;
  c.time_limit_s = 365L * 24 * 3600;
  c.time_limit = format_slurm_time(c.time_limit_s);
  c.source = "this node";
  return c;
}

// The allocation on a cluster and the scaling curve at its R (powers of two of groups, or --scaling).
void allocate(const PlanOptions& o, Plan& p) {
  if (p.profile.total_seconds() > 0 && !p.cost_model) {
    Layout here;
    here.ranks_per_node = o.ranks;
    here.ep = o.ep;
    here.threads_per_rank = p.profile.calibrated_threads;
    p.here = predict(p.profile, this_node(), here);
  }
  if (o.cluster.empty()) return;
  const ClusterSpec cluster = load_cluster(o.cluster);
  AllocationOptions a;
  a.max_nodes = o.max_nodes;
  a.margin = o.margin;
  a.weight_store = !o.no_store;
  a.config = o.config;
  p.allocation = choose_allocation(p.profile, cluster, a);
  std::vector<int> ranks = o.scaling;
  const int R = p.allocation->prediction.layout.ep;
  if (ranks.empty())
    for (int groups = 1; groups * R <= std::max(1, cluster.nodes) * std::max(1, p.allocation->prediction.layout.ranks_per_node);
         groups *= 2)
      ranks.push_back(groups * R);
  p.curve = scaling_curve(p.profile, cluster, R, ranks, !o.no_store);
}

int omp_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// Rates for the plan's backend: this node's calibration (measured now with --calibrate, or kept in the
// rates file), else for a cuda backend the GPU cost model (--gpu, or the cluster file's GPU); none
// otherwise (times are then not predicted, and the plan says how to get rates).
std::optional<CalibratedRates> find_plan_rates(const PlanOptions& o, const StudyProfile& p, const ModelConfig& model,
                                               std::string* missing) {
  const bool cuda = p.backend.rfind("cuda", 0) == 0;
  std::string gpu = o.gpu;
  if (gpu.empty() && !o.cluster.empty()) gpu = load_cluster(o.cluster).gpu;
  if (cuda && gpu.empty() && !o.calibrate) {
    *missing = fmt::format("no rates for {}: --gpu h100|h200|a100 (or a GPU cluster file) for the GPU cost model, or "
                           "--calibrate on a GPU node", p.backend);
    return std::nullopt;
  }
  if (cuda && !o.calibrate && !gpu.empty()) {
    std::string error;
    CalibratedRates r = gpu_cost_model(gpu, model, &error);
    if (!error.empty()) fail_input("--gpu {}: {}", gpu, error);
    return r;
  }
  const int threads = o.threads > 0 ? o.threads : omp_threads();
#ifdef _OPENMP
  omp_set_num_threads(threads);
#endif
  std::unique_ptr<Backend> backend = make_backend(p.backend);
  const std::filesystem::path file = o.rates.empty() ? default_rates_path() : std::filesystem::path(o.rates);
  std::vector<CalibratedRates> kept = load_rates(file);
  const RateKey key = current_rate_key(*backend, p.backend, threads, model);
  if (o.calibrate) {
    CalibrationOptions c;
    c.budget_seconds = o.calibration_s;
    c.threads = threads;
    spdlog::info("calibrating {} at {} threads for about {:.0f} s (model widths {})", p.backend, threads, o.calibration_s,
                 key.shape);
    replace_rates(kept, calibrate_rates(*backend, model, c));
    save_rates(file, kept);
    spdlog::info("rates kept in {}", file.string());
  }
  if (const CalibratedRates* r = find_rates(kept, key)) return *r;
  *missing = fmt::format("no rates for {} at {} threads on {} in {}: `moetrace plan {} --calibrate` measures them "
                         "(about a minute){}", p.backend, threads, key.host, file.string(), o.config,
                         cuda ? ", or --gpu h100|h200|a100 for the GPU cost model" : "");
  return std::nullopt;
}

// Seconds and FLOPs of every stage from the rates.
void price(Plan& plan, const ModelConfig& model, const PlanOptions& o) {
  StudyProfile& p = plan.profile;
  p.moe_fraction = moe_flop_fraction(model, plan.mean_context);
  for (StageProfile& s : p.stages)
    s.flops = static_cast<double>(s.work.steps()) * matmul_flops_per_layer_token(model, plan.mean_context);
  std::string missing;
  const std::optional<CalibratedRates> rates = find_plan_rates(o, p, model, &missing);
  if (!rates) {
    plan.rates_note = missing;
    return;
  }
  for (StageProfile& s : p.stages) {
    s.seconds = 0;
    for (const CallShape& c : s.work.calls) s.seconds += predict_seconds(*rates, c);
    if (plan.streaming && !plan.cost_model)
      s.seconds += static_cast<double>(s.work.engine_calls) * plan.streaming->bytes_per_call() / kStreamBytesPerS;
  }
  p.calibrated_threads = rates->key.threads;
  plan.cost_model = rates->source.rfind("GPU cost model", 0) == 0;
  p.rates_source = rates->source + (rates->measured_at.empty() ? "" : ", " + rates->measured_at);
  plan.calibration_seconds = rates->calibration_seconds;
}

void plan(const PlanOptions& o) {
  if (o.format != "text" && o.format != "json") fail_input("--format {}: must be text or json", o.format);
  if (o.ranks % o.ep != 0) fail_input("--ep {} must divide --ranks {}", o.ep, o.ranks);
  if (o.keep_rate > 1) fail_input("--keep-rate {}: must be in (0, 1]", o.keep_rate);
  if (o.margin < 0 || o.margin > 10) fail_input("--margin {}: must be in [0, 10]", o.margin);
  if (o.max_nodes < 0) fail_input("--nodes {}: must be positive", o.max_nodes);
  if (o.calibration_s < 5 || o.calibration_s > 3600) fail_input("--calibration-seconds {}: must be in [5, 3600]", o.calibration_s);
  if (o.threads < 0) fail_input("--threads {}: must be positive", o.threads);
  Plan p = is_localize_config(o.config) ? plan_localize(o) : plan_run(o);
  if (o.cluster.empty()) p.streaming = streaming_here(p.profile, p.model, o.ep, p.weight_store);
  price(p, p.model, o);
  p.startup_from_store = p.weight_store || (!o.cluster.empty() && !o.no_store);
  p.profile.startup_seconds = startup_seconds(p.profile, p.model_path, p.startup_from_store);
  allocate(o, p);
  if (o.format == "json")
    std::cout << plan_json(p).dump(2) << "\n";
  else
    print_text(p);
}

}  // namespace

void register_plan_command(CLI::App& app) {
  auto o = std::make_shared<PlanOptions>();
  CLI::App* cmd = app.add_subcommand("plan", "The work, memory, time and Slurm allocation of a study, before it runs");
  cmd->footer(
      "Counts the engine work of `moetrace run CONFIG` (or `moetrace localize CONFIG`) stage by stage, exactly\n"
      "as the run will do it, from the config, the model's config.json and tokenizer and the data, without\n"
      "loading weights; then the memory per rank, the results file's size, the time from measured rates and,\n"
      "with --cluster, a Slurm allocation (docs/distribution.md, \"Planning a study\").\n\n"
      "Counts: what the model decides (which records pass the filter, the selected layer and expert; for\n"
      "localize, when each decoding stops) is read from a results file of the same config with --from (a\n"
      "finished run, or a pilot of it), which makes every count exact; without one the stages are marked ~ and\n"
      "rest on stated assumptions (upper bounds); --sample S scans the first S records with the model (the one\n"
      "option that loads weights) for the filter's keep rate, --keep-rate P assumes one.\n\n"
      "Time: --calibrate times the backend at the model's real widths on this node (about a minute) and keeps\n"
      "the rates in the rates file, keyed by host, CPU, backend, threads, versions and widths; later plans\n"
      "with the same key use them. cuda backends without a calibration use the GPU cost model (--gpu, or the\n"
      "cluster file's gpu), marked uncalibrated. A stage's seconds are its engine work (and, for a model larger\n"
      "than this node's memory, re-reading its streamed layers); wall times add each job's startup (weights,\n"
      "provenance hashes); statistics and results writes are not priced (docs/distribution.md: where the\n"
      "prediction misses and why).\n\n"
      "Allocation: --cluster FILE (configs/clusters/) gives nodes, ranks per node, --ep, threads, shards for\n"
      "slurm/chain.sh, --time (with --margin), --mem, the scaling curve and the command lines to submit.\n"
      "--format json prints the same numbers as JSON.\n\n"
      "Exit codes: 0 done; 2 bad input (the message names the file and key).\n\n"
      "Examples:\n"
      "  moetrace plan configs/demo.toml\n"
      "  moetrace plan configs/demo.toml --from results/demo.h5 --format json\n"
      "  moetrace plan configs/qwen3-30b-a3b.toml --sample 200 --calibrate --cluster configs/clusters/cpu-64c-256g.toml\n"
      "  moetrace plan configs/mixtral-8x7b.toml --backend cuda-bf16 --cluster configs/clusters/h100x8-ndr.toml\n"
      "  moetrace plan configs/demo_localize.toml --ranks 2 --ep 2");
  cmd->add_option("CONFIG", o->config, "run or localize configuration (.toml)")->required();
  cmd->add_option("--from", o->from, "results file of a run of this config: the model's decisions (exact counts)");
  cmd->add_option("--backend", o->backend, "backend to plan for, instead of the config's");
  cmd->add_option("--ranks", o->ranks, "MPI ranks N")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--ep", o->ep, "expert-parallel group size R (divides N)")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--keep-rate", o->keep_rate, "assumed share of scanned records that pass the case filter");
  cmd->add_option("--sample", o->sample, "scan the first S records with the model (loads it) for the filter's keep rate")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--format", o->format, "text or json")->capture_default_str();
  cmd->add_flag("--calibrate", o->calibrate, "time the backend at the model's widths on this node (about a minute) and keep the rates");
  cmd->add_option("--calibration-seconds", o->calibration_s, "budget of --calibrate's timed calls")->capture_default_str();
  cmd->add_option("--rates", o->rates, "rates file (default: $MOETRACE_RATES, else ~/.cache/moetrace/rates.json)");
  cmd->add_option("--threads", o->threads, "OpenMP threads of a rank the rates are for (default: this process's)");
  cmd->add_option("--gpu", o->gpu, "h100, h200 or a100: the GPU cost model (uncalibrated) for a cuda backend");
  cmd->add_option("--cluster", o->cluster, "cluster description (.toml, configs/clusters/): propose a Slurm allocation");
  cmd->add_option("--nodes", o->max_nodes, "with --cluster: at most this many nodes (default: the cluster's)");
  cmd->add_option("--margin", o->margin, "with --cluster: --time and --mem headroom")->capture_default_str();
  cmd->add_flag("--no-weight-store", o->no_store, "with --cluster: plan without a weight store (a copy per rank)");
  cmd->add_option("--scaling", o->scaling, "with --cluster: ranks N of the scaling curve (default: powers of two)")
      ->delimiter(',');
  cmd->callback([o] { plan(*o); });
}

}  // namespace moetrace::cli
