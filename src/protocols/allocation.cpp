#include "protocols/allocation.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <regex>
#include <set>

#include <toml++/toml.h>

#include "protocols/toml_table_reader.h"
#include "util/error.h"
#include "util/input_file.h"

namespace moetrace {

namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
constexpr std::int64_t kStopBeforeLimitS = 300;  // the scripts' --signal=B:USR1@300
// The shortest --time asked for: what the plan does not price (statistics, results writes, the
// scheduler's own start) is minutes at most.
constexpr std::int64_t kMinJobS = 15 * 60;
constexpr int kMaxShards = 4096;

}  // namespace

// ---------------------------------------------------------------------------------------------
// The cluster file.

std::int64_t parse_slurm_time(const std::string& s) {
  static const std::regex re(R"(^(?:(\d{1,3})-)?(\d{1,4}):(\d{2}):(\d{2})$)");
  std::smatch m;
  if (!std::regex_match(s, m, re)) return -1;
  const std::int64_t days = m[1].matched ? std::stoll(m[1].str()) : 0;
  const std::int64_t h = std::stoll(m[2].str()), min = std::stoll(m[3].str()), sec = std::stoll(m[4].str());
  if (min >= 60 || sec >= 60 || (m[1].matched && h >= 24)) return -1;
  return ((days * 24 + h) * 60 + min) * 60 + sec;
}

std::string format_slurm_time(std::int64_t seconds) {
  seconds = std::max<std::int64_t>(seconds, 0);
  return fmt::format("{}:{:02}:{:02}", seconds / 3600, seconds / 60 % 60, seconds % 60);
}

ClusterSpec parse_cluster(const std::string& text, const std::string& origin) {
  toml::table root = parse_toml(text, origin);
  check_sections(root, {"cluster"}, origin);
  const toml::table* t = root["cluster"].as_table();
  if (!t) fail_input("{}: [cluster] is required", origin);
  TableReader r(t, "cluster", origin);
  ClusterSpec c;
  c.source = origin;
  const std::set<std::string> keys{"name", "nodes", "cores_per_node", "memory_gib_per_node", "gpus_per_node",
                                   "gpu_memory_gib", "gpu", "intra_node_gbps", "inter_node_gbps", "time_limit",
                                   "partition", "account", "memory_headroom"};
  for (const auto& [k, v] : *t)
    if (!keys.count(std::string(k.str())))
      fail_input("{}: unknown key '{}' in [cluster] (keys: {})", origin, shorten(k.str()), fmt::join(keys, ", "));
  auto required = [&](const char* key) {
    if (!t->get(key)) fail_input("{}: is required", r.where(key));
  };
  for (const char* key : {"name", "nodes", "cores_per_node", "memory_gib_per_node", "gpus_per_node",
                          "intra_node_gbps", "inter_node_gbps", "time_limit"})
    required(key);
  r.string("name", c.name);
  if (c.name.empty()) fail_input("{}: must not be empty", r.where("name"));
  r.integer("nodes", c.nodes, 1, 100000);
  r.integer("cores_per_node", c.cores_per_node, 1, 100000);
  r.number("memory_gib_per_node", c.memory_gib_per_node, 0.125, 1e6);
  r.integer("gpus_per_node", c.gpus_per_node, 0, 64);
  if (c.gpus_per_node > 0) {
    required("gpu_memory_gib");
    required("gpu");
  }
  r.number("gpu_memory_gib", c.gpu_memory_gib, 0.125, 1e5);
  r.string("gpu", c.gpu);
  if (c.gpus_per_node > 0 && c.gpu.empty()) fail_input("{}: must not be empty", r.where("gpu"));
  r.number("intra_node_gbps", c.intra_node_gbps, 1e-3, 1e6);
  r.number("inter_node_gbps", c.inter_node_gbps, 1e-3, 1e6);
  r.string("time_limit", c.time_limit);
  c.time_limit_s = parse_slurm_time(c.time_limit);
  if (c.time_limit_s < 600)
    fail_input("{}: must be [D-]HH:MM:SS (Slurm's --time) of at least 0:10:00, got '{}'", r.where("time_limit"),
               shorten(c.time_limit));
  r.string("partition", c.partition);
  r.string("account", c.account);
  r.number("memory_headroom", c.memory_headroom, 0, 0.9);
  return c;
}

ClusterSpec load_cluster(const std::filesystem::path& toml) {
  return parse_cluster(read_input_file(toml, "cluster file", 1 << 20), toml.string());
}

// ---------------------------------------------------------------------------------------------
// Prediction at a layout.

const char* bound_name(Bound b) {
  switch (b) {
    case Bound::Compute: return "compute";
    case Bound::Exchange: return "exchange";
    case Bound::Imbalance: return "imbalance";
  }
  return "?";
}

const char* job_plan_name(JobPlan p) {
  switch (p) {
    case JobPlan::OneJob: return "one job";
    case JobPlan::Requeue: return "requeued job";
    case JobPlan::Chain: return "chain";
  }
  return "?";
}

namespace {

// Share of all experts in the largest block of an EP group of R (expert_block: ceil(E/R)).
double expert_share(const StudyProfile& p, int R) {
  if (p.experts <= 0) return 1.0 / R;
  return static_cast<double>((p.experts + R - 1) / R) / p.experts;
}

// Experts of the union of the first `ranks` blocks of a group of R (a node holding part of a group).
double union_share(const StudyProfile& p, int ranks, int R) {
  return std::min(1.0, ranks * expert_share(p, R));
}

Bound largest(double compute, double exchange, double imbalance) {
  if (exchange >= compute && exchange >= imbalance) return Bound::Exchange;
  if (imbalance > compute) return Bound::Imbalance;
  return Bound::Compute;
}

MemoryPrediction predict_memory(const StudyProfile& p, const ClusterSpec& c, const Layout& l) {
  MemoryPrediction m;
  const double experts = static_cast<double>(p.weights.experts);
  const double replicated = static_cast<double>(p.weights.replicated);
  m.weights_per_rank = static_cast<std::uint64_t>(std::ceil(replicated + experts * expert_share(p, l.ep)));
  const std::uint64_t cache = p.prepared_cache_bytes;
  // On GPU nodes the activations live on the GPU; the prepared cache and the file's buffers on the host.
  m.private_per_rank = cache + (c.gpu_nodes() ? 0 : p.activation_bytes);
  m.rank_bytes = m.private_per_rank + (c.gpu_nodes() ? 0 : m.weights_per_rank);
  m.rank0_bytes = m.rank_bytes + p.results_bytes;
  if (c.gpu_nodes()) m.gpu_bytes_per_rank = m.weights_per_rank + p.activation_bytes;
  // Host weights of a node: with the store, one mapped copy of the union of its ranks' blocks in the
  // page cache; without, every rank's own copy (on GPU nodes: the loader's host copy before upload).
  const double held = l.weight_store
                          ? replicated + experts * union_share(p, l.ranks_per_node, l.ep)
                          : static_cast<double>(l.ranks_per_node) * m.weights_per_rank;
  m.node_bytes = static_cast<std::uint64_t>(std::ceil(held)) + l.ranks_per_node * m.private_per_rank + p.results_bytes;
  return m;
}

// Bytes per second of the link an EP group uses; an inter-node link is shared by the node's ranks.
double link_bytes_per_s(const ClusterSpec& c, const Layout& l, bool inter) {
  const double gbps = inter ? c.inter_node_gbps / l.ranks_per_node : c.intra_node_gbps;
  return gbps * 1e9 / 8.0;
}

StagePrediction predict_stage(const StageProfile& st, const StudyProfile& p, const Layout& l, double thread_factor,
                              double exchange_bytes, double link) {
  StagePrediction s;
  s.name = st.name;
  const double one_rank = st.seconds * thread_factor;
  const double compute = one_rank * ((1.0 - p.moe_fraction) + p.moe_fraction * expert_share(p, l.ep));
  const double exchange = l.ep > 1 ? static_cast<double>(st.work.steps()) * exchange_bytes / link : 0.0;
  const double group_total = compute + exchange;
  const int G = l.groups();
  s.compute_s = compute / G;
  s.exchange_s = exchange / G;
  if (G > 1 && group_total > 0) {
    const std::int64_t chunks = std::max<std::int64_t>(st.chunks, 1);
    const double chunk = group_total / static_cast<double>(chunks);
    if (chunks <= G) {  // one round: every busy group does one chunk, the others wait
      s.imbalance_s = chunk - group_total / G;
      s.idle_groups = static_cast<int>(G - chunks);
    } else {  // work / groups, then the last chunk
      s.imbalance_s = chunk;
    }
  }
  s.seconds = s.compute_s + s.exchange_s + s.imbalance_s;
  s.bound = largest(s.compute_s, s.exchange_s, s.imbalance_s);
  return s;
}

// A layout given on the command line: every count positive, R dividing N, a GPU per rank.
void check_layout(const ClusterSpec& c, const Layout& l) {
  if (l.nodes < 1 || l.ranks_per_node < 1 || l.ep < 1 || l.threads_per_rank < 1)
    fail_input("layout of {} nodes x {} ranks, --ep {}, {} threads: every count must be positive", l.nodes,
               l.ranks_per_node, l.ep, l.threads_per_rank);
  if (l.ranks() % l.ep != 0) fail_input("--ep {} must divide the number of ranks {}", l.ep, l.ranks());
  if (c.gpu_nodes() && l.ranks_per_node > c.gpus_per_node)
    fail_input("{} ranks per node: more than the {} GPUs per node of {} (one rank per GPU)", l.ranks_per_node,
               c.gpus_per_node, c.source);
}

}  // namespace

Prediction predict(const StudyProfile& p, const ClusterSpec& c, const Layout& l) {
  check_layout(c, l);
  Prediction r;
  r.layout = l;
  r.memory = predict_memory(p, c, l);
  r.exchange_inter_node = l.ep > l.ranks_per_node || l.ranks_per_node % l.ep != 0;
  r.exchange_bytes_per_step = p.exchange_bytes_per_step * 2.0 * (l.ep - 1) / l.ep;
  // CPU: seconds scale linearly with threads up to the cores; a GPU rank's seconds are its GPU's.
  const int threads = std::min(l.threads_per_rank, c.cores_per_node);
  const double thread_factor =
      (c.gpu_nodes() || p.calibrated_threads <= 0) ? 1.0 : static_cast<double>(p.calibrated_threads) / threads;
  const double link = link_bytes_per_s(c, l, r.exchange_inter_node);
  double compute = 0, exchange = 0, imbalance = 0;
  for (const StageProfile& st : p.stages) {
    r.stages.push_back(predict_stage(st, p, l, thread_factor, r.exchange_bytes_per_step, link));
    const StagePrediction& s = r.stages.back();
    r.seconds += s.seconds;
    r.one_rank_seconds += st.seconds * thread_factor;
    compute += s.compute_s, exchange += s.exchange_s, imbalance += s.imbalance_s;
  }
  r.efficiency = r.seconds > 0 ? r.one_rank_seconds / (l.ranks() * r.seconds) : 0.0;
  r.bound = largest(compute, exchange, imbalance);
  r.startup_s = p.startup_seconds;  // every job pays it once (after the efficiency: it is not work)
  r.seconds += r.startup_s;
  return r;
}

// ---------------------------------------------------------------------------------------------
// Choosing the allocation.

namespace {

double usable_node_bytes(const ClusterSpec& c) { return c.memory_gib_per_node * kGiB * (1.0 - c.memory_headroom); }
double usable_gpu_bytes(const ClusterSpec& c) { return c.gpu_memory_gib * kGiB * (1.0 - c.memory_headroom); }

bool fits(const Prediction& pr, const ClusterSpec& c) {
  if (c.gpu_nodes() && pr.memory.gpu_bytes_per_rank > usable_gpu_bytes(c)) return false;
  return static_cast<double>(pr.memory.node_bytes) <= usable_node_bytes(c);
}

// The layout of the fewest nodes for R (ranks per node, threads), or nodes = 0 when R does not fit.
Layout layout_for(const StudyProfile& p, const ClusterSpec& c, int R, bool store, int max_nodes) {
  auto try_rpn = [&](int rpn) {
    Layout l{.nodes = std::max(1, R / rpn), .ranks_per_node = rpn, .ep = R,
             .threads_per_rank = std::max(1, c.cores_per_node / rpn), .weight_store = store};
    if (l.nodes > max_nodes || !fits(predict(p, c, l), c)) l.nodes = 0;
    return l;
  };
  if (c.gpu_nodes()) {  // one rank per GPU; a group within a node or over whole nodes
    if (c.gpus_per_node % R != 0 && R % c.gpus_per_node != 0) return Layout{.nodes = 0};
    return try_rpn(c.gpus_per_node);
  }
  // CPU: one group per node (fewest, widest ranks: with linear thread scaling this loses no compute
  // and shortens the last chunk); a group that does not fit a node spreads over nodes.
  for (int rpn = std::min(R, c.cores_per_node); rpn >= 1; --rpn) {
    if (R % rpn != 0) continue;
    Layout l = try_rpn(rpn);
    if (l.nodes > 0) return l;
  }
  return Layout{.nodes = 0};
}

std::int64_t ceil_minutes(double seconds) {
  return static_cast<std::int64_t>(std::ceil(seconds / 60.0 - 1e-9)) * 60;
}

std::int64_t mem_gib(const Prediction& pr, const ClusterSpec& c, double margin) {
  const double want = std::ceil(pr.memory.node_bytes * (1.0 + margin) / kGiB);
  const double cap = std::floor(usable_node_bytes(c) / kGiB);
  return static_cast<std::int64_t>(std::max(1.0, std::min(want, cap)));
}

// Which round of slurm/chain.sh computes a stage: 0 the case scan (every stage-1 shard repeats it),
// 1 layer sweep, 2 expert tracing, 3 controls and coalitions, 4 the final unsharded run.
int chain_round(const std::string& stage_name) {
  std::string n = stage_name;
  std::transform(n.begin(), n.end(), n.begin(), [](unsigned char ch) { return std::tolower(ch); });
  if (n.find("scan") != std::string::npos) return 0;
  if (n.find("layer sweep") != std::string::npos) return 1;
  if (n.find("expert tracing") != std::string::npos) return 2;
  if (n.find("control") != std::string::npos || n.find("coalition") != std::string::npos) return 3;
  return 4;
}

int runs_needed(double seconds, double margin, std::int64_t limit) {
  const double per_run = static_cast<double>(std::max(limit - kStopBeforeLimitS, limit / 2));
  return std::max(1, static_cast<int>(std::ceil(seconds * (1.0 + margin) / per_run - 1e-9)));
}

// A study's stages by chain round, on one shard process.
struct ChainRounds {
  double scan = 0, final_s = 0, startup = 0;  // startup: every task's and the final job's
  double seconds[4] = {0, 0, 0, 0};     // rounds 1-3 (index 0 unused)
  std::int64_t cases[4] = {0, 0, 0, 0};
  int stages = 1;                       // STAGES: the last non-empty round
  // One task of round k with `shards` shards: its ceil(cases / shards) cases (and the scan in round 1).
  double task_s(int k, int shards) const {
    const double share = cases[k] > 0 ? static_cast<double>((cases[k] + shards - 1) / shards) / cases[k] : 1.0 / shards;
    return startup + (k == 1 ? scan : 0.0) + seconds[k] * share;
  }
  double longest_task_s(int shards) const {
    double m = 0;
    for (int k = 1; k <= stages; ++k) m = std::max(m, task_s(k, shards));
    return m;
  }
};

ChainRounds chain_rounds(const StudyProfile& p, const Prediction& one) {
  ChainRounds r;
  for (std::size_t i = 0; i < p.stages.size(); ++i) {
    const int k = chain_round(p.stages[i].name);
    const double s = one.stages[i].seconds;
    if (k == 0) r.scan += s;
    else if (k == 4) r.final_s += s;
    else r.seconds[k] += s, r.cases[k] = std::max(r.cases[k], p.stages[i].cases);
  }
  for (int k = 1; k <= 3; ++k)
    if (r.seconds[k] > 0) r.stages = k;
  r.startup = one.startup_s;
  r.final_s += r.startup;
  return r;
}

// 4a. A chain of shard arrays (one process per task, R = 1): the fewest shards whose every task fits
// the time limit, raised to the task slots. False when the case scan alone does not fit.
bool plan_chain(const StudyProfile& p, const ClusterSpec& c, Allocation& a, int max_nodes) {
  const double margin = a.options.margin, limit = static_cast<double>(c.time_limit_s);
  const Layout task{.nodes = 1, .ranks_per_node = 1, .ep = 1,
                    .threads_per_rank = c.gpu_nodes() ? std::max(1, c.cores_per_node / c.gpus_per_node) : c.cores_per_node,
                    .weight_store = a.options.weight_store};
  const Prediction one = predict(p, c, task);
  const ChainRounds r = chain_rounds(p, one);
  if (!fits(one, c) || r.scan * (1.0 + margin) > limit) return false;
  int shards = 1;
  while (shards < kMaxShards && r.longest_task_s(shards) * (1.0 + margin) > limit) ++shards;
  if (r.longest_task_s(shards) * (1.0 + margin) > limit) return false;
  const int slots = max_nodes * (c.gpu_nodes() ? c.gpus_per_node : 1);
  std::int64_t most_cases = 1;
  for (int k = 1; k <= r.stages; ++k) most_cases = std::max(most_cases, r.cases[k]);
  shards = std::max(shards, static_cast<int>(std::min<std::int64_t>(slots, most_cases)));
  const int final_runs = runs_needed(r.final_s, margin, c.time_limit_s);
  a.plan = JobPlan::Chain;
  a.prediction = one;
  a.shards = shards;
  a.chain_stages = r.stages;
  a.jobs = r.stages * shards + r.stages + final_runs + 1;
  a.wall_s = r.final_s;
  for (int k = 1; k <= r.stages; ++k) a.wall_s += std::ceil(static_cast<double>(shards) / slots) * r.task_s(k, shards);
  a.job_s = std::max(r.longest_task_s(shards), final_runs > 1 ? limit : r.final_s);
  a.slurm_time_s = std::min(c.time_limit_s, std::max(kMinJobS, ceil_minutes(a.job_s * (1.0 + margin))));
  a.notes.push_back(fmt::format(
      "no job of at most {} nodes finishes within the time limit {}: slurm/chain.sh runs the per-case stages as "
      "{} array(s) of {} one-process shard tasks (each repeats the case scan in stage 1), merges them and "
      "finishes unsharded{}",
      max_nodes, c.time_limit, r.stages, shards,
      final_runs > 1 ? fmt::format(" (the final job requeues itself: {} runs)", final_runs) : ""));
  return true;
}

std::string script_for(const Allocation& a) {
  if (a.plan == JobPlan::Chain) return "slurm/chain.sh";
  if (a.protocol == "localize") return "slurm/localize.sbatch";
  if (a.prediction.layout.ranks() == 1) return "slurm/sweep.sbatch";
  std::string m = a.model;
  std::transform(m.begin(), m.end(), m.begin(), [](unsigned char ch) { return std::tolower(ch); });
  return m.find("mixtral") != std::string::npos ? "slurm/mixtral-8x7b.sbatch" : "slurm/qwen3-30b-a3b.sbatch";
}

std::string common_options(const Allocation& a) {
  const ClusterSpec& c = a.cluster;
  std::string s = fmt::format("--time={} --mem={}G", format_slurm_time(a.slurm_time_s), a.mem_gib_per_node);
  if (!c.partition.empty()) s += " --partition=" + c.partition;
  if (!c.account.empty()) s += " --account=" + c.account;
  return s;
}

std::vector<std::string> command_lines(const Allocation& a) {
  const Layout& l = a.prediction.layout;
  const bool gpu = a.cluster.gpu_nodes();
  const std::string store = a.options.weight_store ? ",WEIGHT_STORE=" + a.options.weight_store_dir : "";
  if (a.plan == JobPlan::Chain) {
    std::string out_dir = std::filesystem::path(a.options.out).replace_extension().string();
    return {fmt::format("{}CONFIG={} OUT_DIR={} SHARDS={} STAGES={} bash slurm/chain.sh --cpus-per-task={}{} {}",
                        a.options.weight_store ? "WEIGHT_STORE=" + a.options.weight_store_dir + " " : "",
                        a.options.config, out_dir, a.shards, a.chain_stages, l.threads_per_rank,
                        gpu ? " --gpus-per-node=1" : "", common_options(a))};
  }
  std::string tasks = l.ranks() == 1 && a.script == "slurm/sweep.sbatch"
                          ? fmt::format("--nodes=1 --ntasks=1 --cpus-per-task={}", l.threads_per_rank)
                          : fmt::format("--nodes={} --ntasks-per-node={} --cpus-per-task={}", l.nodes,
                                        l.ranks_per_node, l.threads_per_rank);
  tasks += fmt::format(" --gpus-per-node={}", gpu ? (l.ranks() == 1 ? 1 : l.ranks_per_node) : 0);
  const std::string ep = a.script == "slurm/sweep.sbatch" ? "" : fmt::format(",EP={}", l.ep);
  return {fmt::format("sbatch {} {} --export=ALL,CONFIG={},OUT={}{}{} {}", tasks, common_options(a), a.options.config,
                      a.options.out, ep, store, a.script)};
}

}  // namespace

namespace {

// 1. The smallest R whose ranks fit the memory (per GPU on GPU nodes, and per node), at its layout
// of the fewest nodes; an InputError naming the cluster file when none does.
Layout smallest_ep_layout(const StudyProfile& p, const ClusterSpec& c, bool store, int max_nodes) {
  const int slots = max_nodes * (c.gpu_nodes() ? c.gpus_per_node : c.cores_per_node);
  const int max_ep = std::max(1, std::min(p.experts > 0 ? p.experts : 64, slots));
  for (int R = 1; R <= max_ep; ++R) {
    const Layout l = layout_for(p, c, R, store, max_nodes);
    if (l.nodes > 0) return l;
  }
  const Prediction whole = predict(p, c, Layout{.nodes = 1, .ranks_per_node = 1, .ep = 1, .weight_store = store});
  fail_input("{}: the study does not fit: a whole-model rank needs {:.1f} GiB{} and no --ep up to {} on at most {} "
             "nodes fits {:.1f} GiB per node{} (memory_headroom {})",
             c.source, whole.memory.node_bytes / kGiB,
             c.gpu_nodes() ? fmt::format(" ({:.1f} GiB on its GPU)", whole.memory.gpu_bytes_per_rank / kGiB) : "",
             max_ep, max_nodes, usable_node_bytes(c) / kGiB,
             c.gpu_nodes() ? fmt::format(" and {:.1f} GiB per GPU", usable_gpu_bytes(c) / kGiB) : "", c.memory_headroom);
}

// 2. The fewest nodes whose time x (1 + margin) fits the limit; when none does, the fewest that
// reach the shortest time. Without rates: the fewest nodes.
Prediction fewest_nodes(const StudyProfile& p, const ClusterSpec& c, const Layout& base, double margin, int max_nodes,
                        bool time_known) {
  const double limit = static_cast<double>(c.time_limit_s);
  std::vector<Prediction> candidates;
  for (int n = base.nodes; n <= max_nodes; ++n) {
    Layout l = base;
    l.nodes = n;
    if (l.ranks() % l.ep != 0) continue;
    candidates.push_back(predict(p, c, l));
    if (!time_known || candidates.back().seconds * (1.0 + margin) <= limit) return candidates.back();
  }
  for (const Prediction& pr : candidates)
    if (pr.seconds <= candidates.back().seconds * 1.001) return pr;
  return candidates.back();
}

// 4b. One job that stops before its limit, saves, requeues itself and resumes.
void plan_requeue(Allocation& a, int max_nodes) {
  const ClusterSpec& c = a.cluster;
  a.plan = JobPlan::Requeue;
  a.jobs = runs_needed(a.prediction.seconds, a.options.margin, c.time_limit_s);
  a.slurm_time_s = c.time_limit_s;
  a.job_s = static_cast<double>(c.time_limit_s - kStopBeforeLimitS);
  const std::string why = a.protocol != "run" ? " (slurm/chain.sh shards `run` studies only)"
                          : a.prediction.layout.ep > 1
                              ? " (chain.sh's shard tasks are one process each, so an --ep > 1 study is not sharded)"
                              : " (the case scan that every stage-1 shard repeats does not fit one job)";
  a.notes.push_back(fmt::format(
      "no job of at most {} nodes finishes within the time limit {}: the job stops {} s before its limit, saves, "
      "requeues itself and resumes: {} runs{}",
      max_nodes, c.time_limit, kStopBeforeLimitS, a.jobs, why));
}

}  // namespace

Allocation choose_allocation(const StudyProfile& p, const ClusterSpec& c, const AllocationOptions& o) {
  if (o.max_nodes < 0) fail_input("max nodes {}: must be 0 (the cluster's) or positive", o.max_nodes);
  if (!(o.margin >= 0 && o.margin <= 10)) fail_input("margin {}: must lie in [0, 10]", o.margin);
  Allocation a;
  a.cluster = c;
  a.options = o;
  a.protocol = p.protocol;
  a.model = p.model;
  a.time_known = p.total_seconds() > 0;
  const int max_nodes = o.max_nodes > 0 ? std::min(o.max_nodes, c.nodes) : c.nodes;
  const Layout base = smallest_ep_layout(p, c, o.weight_store, max_nodes);
  a.prediction = fewest_nodes(p, c, base, o.margin, max_nodes, a.time_known);
  a.wall_s = a.job_s = a.prediction.seconds;
  const double with_margin = a.prediction.seconds * (1.0 + o.margin);
  if (!a.time_known) {
    a.slurm_time_s = c.time_limit_s;
    a.notes.push_back("the profile has no rates (no calibration): time not predicted; --time is the limit and the "
                      "nodes are the fewest that fit the memory");
  } else if (with_margin <= static_cast<double>(c.time_limit_s)) {
    a.slurm_time_s = std::min(c.time_limit_s, std::max(kMinJobS, ceil_minutes(with_margin)));
  } else if (!(p.protocol == "run" && a.prediction.layout.ep == 1 && plan_chain(p, c, a, max_nodes))) {
    plan_requeue(a, max_nodes);
  }
  a.mem_gib_per_node = mem_gib(a.prediction, c, o.margin);
  a.script = script_for(a);
  a.commands = command_lines(a);
  if (c.gpu_nodes() && a.prediction.layout.ep > 1)
    a.notes.push_back("the EP exchange is staged through the host today (docs/distribution.md): the predicted "
                      "exchange time, at the cluster file's link speeds, is a lower bound");
  if (c.gpu_nodes() && a.plan == JobPlan::Chain)
    a.notes.push_back("chain.sh passes its options to every job: the merges and the report ask for a GPU too");
  return a;
}

std::vector<ScalingPoint> scaling_curve(const StudyProfile& p, const ClusterSpec& c, int ep, const std::vector<int>& ranks,
                                        bool weight_store) {
  if (ep < 1) fail_input("--ep {}: must be a positive integer", ep);
  Layout base = layout_for(p, c, ep, weight_store, c.nodes);
  if (base.nodes == 0) {  // memory aside: the widest ranks of the cluster for this R
    base = Layout{.nodes = 1, .ranks_per_node = c.gpu_nodes() ? c.gpus_per_node : std::min(ep, c.cores_per_node),
                  .ep = ep, .weight_store = weight_store};
    base.threads_per_rank = std::max(1, c.cores_per_node / base.ranks_per_node);
  }
  std::vector<ScalingPoint> out;
  for (int N : ranks) {
    if (N < 1 || N % ep != 0) fail_input("{} ranks: --ep {} must divide the number of ranks", N, ep);
    Layout l = base;
    l.nodes = (N + base.ranks_per_node - 1) / base.ranks_per_node;
    if (N % l.nodes != 0) fail_input("{} ranks do not spread evenly over {} nodes of {} ranks", N, l.nodes, base.ranks_per_node);
    l.ranks_per_node = N / l.nodes;
    const Prediction pr = predict(p, c, l);
    out.push_back({.ranks = N, .nodes = l.nodes, .groups = l.groups(), .ep = ep, .seconds = pr.seconds,
                   .efficiency = pr.efficiency, .exchange_bytes_per_step = pr.exchange_bytes_per_step, .bound = pr.bound});
  }
  return out;
}

}  // namespace moetrace
