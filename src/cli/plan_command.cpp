// `moetrace plan`: a study's engine work, memory, time and Slurm allocation, known before it is
// submitted (docs/distribution.md, "Planning a study"). Reads the config, the model's config.json
// and tokenizer, the data and this machine; never loads weights.
#include <sys/resource.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <toml++/toml.h>

#include "backend/backend_registry.h"
#include "cli/commands.h"
#include "model/model_config.h"
#include "protocols/allocation.h"
#include "cli/command_session.h"
#include "comm/single_rank_communicator.h"
#include "engine/case_tracer.h"
#include "protocols/case_scan.h"
#include "protocols/counterfact.h"
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
};

// What a plan prints: the profile and how its numbers were obtained.
struct Plan {
  std::string config, decisions;
  StudyProfile profile;
  int ranks = 1, ep = 1;
  double process_bytes = 0;  // this process's peak RSS once the data and tokenizer are read
  std::optional<Allocation> allocation;
  std::vector<ScalingPoint> curve;
};

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
  }
  RunWorkAssumptions assume;
  if (o.sample > 0 && !outcome) assume = sampled_keep_rate(config, records, o.sample);
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

RankMemory rank_memory(const StudyProfile& p, int ep, double process_bytes) {
  RankMemory m;
  m.weights = static_cast<double>(p.weights.replicated) + static_cast<double>(p.weights.experts) / ep;
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
  const RankMemory m = rank_memory(p, plan.ep, plan.process_bytes);
  j["memory"] = {{"ep", plan.ep},
                 {"weights_replicated_bytes", p.weights.replicated},
                 {"weights_experts_bytes", p.weights.experts},
                 {"rank_weights_bytes", m.weights},
                 {"rank_activation_bytes", m.activations},
                 {"rank_prepared_cache_bytes", m.cache},
                 {"rank_process_bytes", m.process},
                 {"rank_total_bytes", m.total()},
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
  fmt::print("  {:<36} {:>9} {:>12} {:>8} {:>12} {:>16} {:>14} {:>14}\n", "stage", "cases", "conditions", "chunks",
             "engine calls", "layer-token steps", "preparing", "in conditions");
  auto row = [](const StageProfile& s) {
    fmt::print("  {:<36} {:>9} {:>12} {:>8} {:>12} {:>16} {:>14} {:>14}\n", (s.estimate ? "~ " : "") + s.name, s.cases,
               s.conditions, s.chunks, s.work.engine_calls, s.work.steps(), s.work.prepare_steps, s.work.condition_steps);
  };
  for (const StageProfile& s : p.stages) row(s);
  row(total_of(p));
  bool notes = false;
  for (const StageProfile& s : p.stages)
    if (s.estimate && !notes) {
      fmt::print("  ~ an estimate: {}. A results file of this config (--from) makes every count exact.\n", s.note);
      notes = true;
    }
  const RankMemory m = rank_memory(p, plan.ep, plan.process_bytes);
  fmt::print("\nMemory per rank (EP group of {}):\n", plan.ep);
  fmt::print("  weights            {:>12}  (replicated {}, experts {} / {})\n", gib(m.weights),
             gib(static_cast<double>(p.weights.replicated)), gib(static_cast<double>(p.weights.experts)), plan.ep);
  fmt::print("  activations        {:>12}  (the largest engine call and a chunk's prepared cases)\n", gib(m.activations));
  fmt::print("  prepared cases     {:>12}  (the cache at its fullest)\n", gib(m.cache));
  fmt::print("  process            {:>12}  (libraries, tokenizer, data: this plan's own peak RSS; the engine's scratch)\n", gib(m.process));
  fmt::print("  peak RSS           {:>12}\n", gib(m.total()));
  fmt::print("\nResults file: {} on disk (the writing rank)\n", gib(static_cast<double>(p.results_bytes)));
  if (plan.allocation) fmt::print("\n{}", allocation_text(*plan.allocation, plan.curve));
}

// The allocation on a cluster and the scaling curve at its R (powers of two of groups, or --scaling).
void allocate(const PlanOptions& o, Plan& p) {
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

void plan(const PlanOptions& o) {
  if (o.format != "text" && o.format != "json") fail_input("--format {}: must be text or json", o.format);
  if (o.ranks % o.ep != 0) fail_input("--ep {} must divide --ranks {}", o.ep, o.ranks);
  if (o.keep_rate > 1) fail_input("--keep-rate {}: must be in (0, 1]", o.keep_rate);
  if (is_localize_config(o.config)) fail_input("{}: plans of localize configs are not ready yet", o.config);
  if (o.margin < 0 || o.margin > 10) fail_input("--margin {}: must be in [0, 10]", o.margin);
  if (o.max_nodes < 0) fail_input("--nodes {}: must be positive", o.max_nodes);
  Plan p = plan_run(o);
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
      "loading weights; then the memory per rank and the results file's size (docs/distribution.md,\n"
      "\"Planning a study\").\n\n"
      "What the model decides (which records pass the filter, the selected layer and expert) is read from a\n"
      "results file of the same config with --from (a finished run, or a small pilot of it), which makes every\n"
      "count exact; without one the counts are marked ~ and rest on stated assumptions (upper bounds).\n\n"
      "Examples:\n"
      "  moetrace plan configs/demo.toml\n"
      "  moetrace plan configs/demo.toml --from results/demo.h5 --format json");
  cmd->add_option("CONFIG", o->config, "run or localize configuration (.toml)")->required();
  cmd->add_option("--from", o->from, "results file of a run of this config: the model's decisions (exact counts)");
  cmd->add_option("--backend", o->backend, "backend to plan for, instead of the config's");
  cmd->add_option("--ranks", o->ranks, "MPI ranks N")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--ep", o->ep, "expert-parallel group size R (divides N)")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--keep-rate", o->keep_rate, "assumed share of scanned records that pass the case filter");
  cmd->add_option("--sample", o->sample, "scan the first S records with the model (loads it) for the filter's keep rate")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--format", o->format, "text or json")->capture_default_str();
  cmd->add_option("--cluster", o->cluster, "cluster description (.toml, configs/clusters/): propose a Slurm allocation");
  cmd->add_option("--nodes", o->max_nodes, "with --cluster: at most this many nodes (default: the cluster's)");
  cmd->add_option("--margin", o->margin, "with --cluster: --time and --mem headroom")->capture_default_str();
  cmd->add_flag("--no-weight-store", o->no_store, "with --cluster: plan without a weight store (a copy per rank)");
  cmd->add_option("--scaling", o->scaling, "with --cluster: ranks N of the scaling curve (default: powers of two)")
      ->delimiter(',');
  cmd->callback([o] { plan(*o); });
}

}  // namespace moetrace::cli
