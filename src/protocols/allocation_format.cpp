// allocation_text and allocation_json: the same numbers, rounded the same way (a test checks that
// every JSON number appears in the text as formatted here).
#include <cmath>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "protocols/allocation.h"

namespace moetrace {

namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

// Numbers as both outputs show them: GiB and seconds with one decimal, efficiency with two.
double gib1(std::uint64_t bytes) { return std::round(bytes / kGiB * 10.0) / 10.0; }
double round1(double x) { return std::round(x * 10.0) / 10.0; }
double round2(double x) { return std::round(x * 100.0) / 100.0; }

std::string hours(double s) { return fmt::format("{:.1f} h", s / 3600.0); }

}  // namespace

nlohmann::json allocation_json(const Allocation& a, const std::vector<ScalingPoint>& curve) {
  const Prediction& p = a.prediction;
  const Layout& l = p.layout;
  nlohmann::json j;
  j["cluster"] = {{"name", a.cluster.name}, {"file", a.cluster.source}, {"nodes", a.cluster.nodes},
                  {"cores_per_node", a.cluster.cores_per_node}, {"memory_gib_per_node", a.cluster.memory_gib_per_node},
                  {"gpus_per_node", a.cluster.gpus_per_node}, {"gpu_memory_gib", a.cluster.gpu_memory_gib},
                  {"gpu", a.cluster.gpu}, {"time_limit", a.cluster.time_limit},
                  {"memory_headroom", a.cluster.memory_headroom}};
  j["layout"] = {{"nodes", l.nodes}, {"ranks_per_node", l.ranks_per_node}, {"ranks", l.ranks()}, {"ep", l.ep},
                 {"groups", l.groups()}, {"threads_per_rank", l.threads_per_rank},
                 {"gpus_per_rank", a.cluster.gpu_nodes() ? 1 : 0}, {"weight_store", l.weight_store}};
  j["memory_gib"] = {{"weights_per_rank", gib1(p.memory.weights_per_rank)},
                     {"private_per_rank", gib1(p.memory.private_per_rank)}, {"rank", gib1(p.memory.rank_bytes)},
                     {"rank0", gib1(p.memory.rank0_bytes)}, {"node", gib1(p.memory.node_bytes)},
                     {"gpu_per_rank", gib1(p.memory.gpu_bytes_per_rank)}, {"slurm_mem_per_node", a.mem_gib_per_node}};
  j["time"] = {{"known", a.time_known}, {"plan", job_plan_name(a.plan)}, {"jobs", a.jobs}, {"shards", a.shards},
               {"chain_stages", a.chain_stages}, {"layout_s", round1(p.seconds)}, {"wall_s", round1(a.wall_s)},
               {"job_s", round1(a.job_s)}, {"margin", a.options.margin}, {"slurm_time", format_slurm_time(a.slurm_time_s)},
               {"slurm_time_s", a.slurm_time_s}, {"one_rank_s", round1(p.one_rank_seconds)},
               {"efficiency", round2(p.efficiency)}, {"bound", bound_name(p.bound)},
               {"exchange_bytes_per_step", round1(p.exchange_bytes_per_step)},
               {"exchange_link", p.exchange_inter_node ? "inter-node" : "intra-node"}};
  nlohmann::json stages = nlohmann::json::array();
  for (const StagePrediction& s : p.stages)
    stages.push_back({{"name", s.name}, {"seconds", round1(s.seconds)}, {"compute_s", round1(s.compute_s)},
                      {"exchange_s", round1(s.exchange_s)}, {"imbalance_s", round1(s.imbalance_s)},
                      {"idle_groups", s.idle_groups}, {"bound", bound_name(s.bound)}});
  j["stages"] = stages;
  nlohmann::json sc = nlohmann::json::array();
  for (const ScalingPoint& s : curve)
    sc.push_back({{"ranks", s.ranks}, {"ep", s.ep}, {"nodes", s.nodes}, {"groups", s.groups}, {"seconds", round1(s.seconds)},
                  {"efficiency", round2(s.efficiency)}, {"exchange_bytes_per_step", round1(s.exchange_bytes_per_step)},
                  {"bound", bound_name(s.bound)}});
  j["scaling"] = sc;
  j["script"] = a.script;
  j["commands"] = a.commands;
  j["notes"] = a.notes;
  return j;
}

namespace {

std::string layout_text(const Allocation& a) {
  const Layout& l = a.prediction.layout;
  const ClusterSpec& c = a.cluster;
  std::string s = fmt::format("Allocation on {} ({}: {} nodes of {} cores, {:g} GiB{}; limit {} per job)\n", c.name,
                              c.source, c.nodes, c.cores_per_node, c.memory_gib_per_node,
                              c.gpu_nodes() ? fmt::format(", {} x {} {:g} GiB", c.gpus_per_node, c.gpu, c.gpu_memory_gib) : "",
                              c.time_limit);
  s += fmt::format("  nodes              {}\n", l.nodes);
  s += fmt::format("  ranks per node     {}\n", l.ranks_per_node);
  s += fmt::format("  ranks (N)          {}\n", l.ranks());
  s += fmt::format("  --ep (R)           {}\n", l.ep);
  s += fmt::format("  groups (N/R)       {}\n", l.groups());
  s += fmt::format("  threads per rank   {}\n", l.threads_per_rank);
  if (c.gpu_nodes()) s += "  GPUs per rank      1\n";
  s += fmt::format("  weight store       {}\n", l.weight_store ? "yes (one mapped copy per node)" : "no (a copy per rank)");
  return s;
}

std::string memory_text(const Allocation& a) {
  const MemoryPrediction& m = a.prediction.memory;
  std::string s = "Memory (GiB)\n";
  s += fmt::format("  weights per rank   {:.1f}\n", gib1(m.weights_per_rank));
  s += fmt::format("  private per rank   {:.1f}\n", gib1(m.private_per_rank));
  s += fmt::format("  rank               {:.1f}\n", gib1(m.rank_bytes));
  s += fmt::format("  rank 0             {:.1f}\n", gib1(m.rank0_bytes));
  s += fmt::format("  node               {:.1f}\n", gib1(m.node_bytes));
  if (a.cluster.gpu_nodes()) s += fmt::format("  GPU per rank       {:.1f}\n", gib1(m.gpu_bytes_per_rank));
  s += fmt::format("  --mem per node     {}G\n", a.mem_gib_per_node);
  return s;
}

std::string time_text(const Allocation& a) {
  const Prediction& p = a.prediction;
  std::string s = "Time\n";
  s += fmt::format("  plan               {}\n", job_plan_name(a.plan));
  if (a.plan != JobPlan::OneJob) s += fmt::format("  jobs               {}\n", a.jobs);
  if (a.plan == JobPlan::Chain) s += fmt::format("  shards x stages    {} x {}\n", a.shards, a.chain_stages);
  if (a.time_known) {
    s += fmt::format("  layout s           {:.1f} ({})\n", round1(p.seconds), hours(p.seconds));
    s += fmt::format("  study wall s       {:.1f} ({})\n", round1(a.wall_s), hours(a.wall_s));
    s += fmt::format("  longest job s      {:.1f}\n", round1(a.job_s));
    s += fmt::format("  one rank s         {:.1f}\n", round1(p.one_rank_seconds));
    s += fmt::format("  efficiency         {:.2f}\n", round2(p.efficiency));
    s += fmt::format("  bound by           {}\n", bound_name(p.bound));
  }
  s += fmt::format("  exchange B/step    {:.1f} ({})\n", round1(p.exchange_bytes_per_step),
                   p.exchange_inter_node ? "inter-node" : "intra-node");
  s += fmt::format("  --time             {} (predicted x {:g}, in minutes, at most the limit)\n",
                   format_slurm_time(a.slurm_time_s), 1.0 + a.options.margin);
  return s;
}

std::string stages_text(const Allocation& a) {
  std::string s;
  if (a.plan == JobPlan::Chain) s += "  (chain: the layout above is one shard task; the stages below are whole stages on it)\n";
  if (!a.time_known || a.prediction.stages.empty()) return s;
  s += fmt::format("\n  {:<22} {:>12} {:>12} {:>12} {:>12} {:>5}  {}\n", "stage", "seconds", "compute", "exchange",
                   "imbalance", "idle", "bound");
  for (const StagePrediction& st : a.prediction.stages)
    s += fmt::format("  {:<22} {:>12.1f} {:>12.1f} {:>12.1f} {:>12.1f} {:>5}  {}\n", st.name, round1(st.seconds),
                     round1(st.compute_s), round1(st.exchange_s), round1(st.imbalance_s), st.idle_groups,
                     bound_name(st.bound));
  return s;
}

std::string scaling_text(const std::vector<ScalingPoint>& curve) {
  if (curve.empty()) return "";
  std::string s = fmt::format("\n  Scaling at --ep {}\n  {:>6} {:>6} {:>7} {:>12} {:>6} {:>12}  {}\n", curve.front().ep,
                              "N", "nodes", "groups", "seconds", "eff", "B/step", "bound");
  for (const ScalingPoint& sp : curve)
    s += fmt::format("  {:>6} {:>6} {:>7} {:>12.1f} {:>6.2f} {:>12.1f}  {}\n", sp.ranks, sp.nodes, sp.groups,
                     round1(sp.seconds), round2(sp.efficiency), round1(sp.exchange_bytes_per_step), bound_name(sp.bound));
  return s;
}

}  // namespace

std::string allocation_text(const Allocation& a, const std::vector<ScalingPoint>& curve) {
  std::string s = layout_text(a) + memory_text(a) + time_text(a) + stages_text(a) + scaling_text(curve);
  for (const std::string& n : a.notes) s += "note: " + n + "\n";
  s += "\nSubmit from the repository root:\n";
  for (const std::string& cmd : a.commands) s += "  " + cmd + "\n";
  return s;
}

}  // namespace moetrace
