// The allocation of `moetrace plan` (protocols/allocation.h): hostile cluster files, hand-made
// profiles whose allocation is derived on paper below, monotone scaling curves, and the JSON and
// text outputs carrying the same numbers.
#define BOOST_TEST_MODULE allocation
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <ostream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "protocols/allocation.h"
#include "support/input_error.h"
#include "support/test_paths.h"
#include "util/error.h"

using namespace moetrace;
using moetrace::test::input_error_of;

namespace {

constexpr std::uint64_t GiB = 1024ull * 1024 * 1024;

const std::string kCpuCluster = R"([cluster]
name = "test"
nodes = 8
cores_per_node = 64
memory_gib_per_node = 100
gpus_per_node = 0
intra_node_gbps = 400
inter_node_gbps = 200
time_limit = "10:00:00"
memory_headroom = 0.0
)";

ClusterSpec cpu_cluster() { return parse_cluster(kCpuCluster, "cluster.toml"); }

// kCpuCluster with the line starting with `key` replaced by `line` ("" removes it).
std::string with_line(const std::string& key, const std::string& line) {
  std::string out, rest = kCpuCluster;
  std::size_t at = 0;
  while (at < rest.size()) {
    const std::size_t end = rest.find('\n', at);
    const std::string l = rest.substr(at, end - at);
    if (l.rfind(key + " ", 0) == 0) {
      if (!line.empty()) out += line + "\n";
    } else {
      out += l + "\n";
    }
    at = end + 1;
  }
  return out;
}

StageProfile stage(const std::string& name, double seconds, std::int64_t chunks, std::int64_t cases, std::uint64_t steps) {
  StageProfile s;
  s.name = name;
  s.seconds = seconds;
  s.chunks = chunks;
  s.cases = cases;
  s.work.condition_steps = steps;
  return s;
}

// Profile A: 8 experts, 10 GiB replicated + 160 GiB of experts, 2 + 3 GiB private per rank, a 1 GiB
// results file; seconds at 16 threads; half of the FLOPs in the experts; 25,000 B per step at R = 2.
StudyProfile profile_a(double sweep_seconds) {
  StudyProfile p;
  p.protocol = "run";
  p.model = "some-moe";
  p.layers = 4, p.experts = 8, p.top_k = 2, p.hidden = 64;
  p.weights = {.replicated = 10 * GiB, .experts = 160 * GiB};
  p.activation_bytes = 2 * GiB;
  p.prepared_cache_bytes = 3 * GiB;
  p.results_bytes = 1 * GiB;
  p.exchange_bytes_per_step = 25000;
  p.moe_fraction = 0.5;
  p.calibrated_threads = 16;
  p.stages = {stage("layer sweep", sweep_seconds, 1000, 1000, 3'600'000'000ull)};
  return p;
}

// Profile B: the whole model fits one rank (10 + 40 GiB); five stages for the chain.
StudyProfile profile_b() {
  StudyProfile p = profile_a(0);
  p.weights = {.replicated = 10 * GiB, .experts = 40 * GiB};
  p.stages = {stage("case scan", 4000, 10, 1000, 1000), stage("layer sweep", 400000, 1000, 1000, 1000),
              stage("expert tracing", 200000, 1000, 1000, 1000), stage("controls", 80000, 1000, 1000, 1000),
              stage("statistics", 8000, 0, 0, 0)};
  return p;
}

}  // namespace

namespace moetrace {  // for Boost.Test's messages
std::ostream& operator<<(std::ostream& os, Bound b) { return os << bound_name(b); }
std::ostream& operator<<(std::ostream& os, JobPlan p) { return os << job_plan_name(p); }
}  // namespace moetrace

namespace {

bool close(double a, double b, double tol = 1e-9) { return std::fabs(a - b) <= tol * std::max(1.0, std::fabs(b)); }

}  // namespace

BOOST_AUTO_TEST_CASE(example_cluster_files_load) {
  const ClusterSpec cpu = load_cluster(test::source_dir() / "configs/clusters/cpu-64c-256g.toml");
  BOOST_TEST(cpu.nodes == 16);
  BOOST_TEST(cpu.cores_per_node == 64);
  BOOST_TEST(cpu.time_limit_s == 48 * 3600);
  BOOST_TEST(!cpu.gpu_nodes());
  BOOST_TEST(cpu.partition == "cpu");
  const ClusterSpec gpu = load_cluster(test::source_dir() / "configs/clusters/h100x8-ndr.toml");
  BOOST_TEST(gpu.gpus_per_node == 8);
  BOOST_TEST(gpu.gpu == "h100");
  BOOST_TEST(gpu.intra_node_gbps == 7200);
  BOOST_TEST(gpu.memory_headroom == 0.10);
}

BOOST_AUTO_TEST_CASE(slurm_times) {
  BOOST_TEST(parse_slurm_time("48:00:00") == 172800);
  BOOST_TEST(parse_slurm_time("2-01:30:15") == ((2 * 24 + 1) * 60 + 30) * 60 + 15);
  for (const char* bad : {"", "48h", "1:60:00", "1:00:60", "2-24:00:00", "-1:00:00", "1:00", "12:00:00 "})
    BOOST_TEST(parse_slurm_time(bad) == -1, bad);
  BOOST_TEST(format_slurm_time(21060) == "5:51:00");
  BOOST_TEST(format_slurm_time(172800) == "48:00:00");
}

// Every bad key is an InputError naming the file and the key.
BOOST_AUTO_TEST_CASE(hostile_cluster_files) {
  struct Case { std::string text, expect; };
  const std::vector<Case> cases{
      {with_line("cores_per_node", "cores_per_node = 0"), "[cluster] cores_per_node"},
      {with_line("cores_per_node", "cores_per_node = -4"), "[cluster] cores_per_node"},
      {with_line("cores_per_node", "cores_per_node = 6.5"), "[cluster] cores_per_node"},
      {with_line("cores_per_node", "cores_per_node = \"64\""), "[cluster] cores_per_node"},
      {with_line("cores_per_node", ""), "[cluster] cores_per_node: is required"},
      {with_line("nodes", "nodes = 0"), "[cluster] nodes"},
      {with_line("nodes", ""), "[cluster] nodes: is required"},
      {with_line("name", "name = 3"), "[cluster] name"},
      {with_line("name", "name = \"\""), "[cluster] name"},
      {with_line("name", ""), "[cluster] name: is required"},
      {with_line("memory_gib_per_node", "memory_gib_per_node = 0"), "[cluster] memory_gib_per_node"},
      {with_line("memory_gib_per_node", "memory_gib_per_node = nan"), "[cluster] memory_gib_per_node"},
      {with_line("memory_gib_per_node", "memory_gib_per_node = true"), "[cluster] memory_gib_per_node"},
      {with_line("gpus_per_node", "gpus_per_node = -1"), "[cluster] gpus_per_node"},
      {with_line("gpus_per_node", ""), "[cluster] gpus_per_node: is required"},
      {with_line("gpus_per_node", "gpus_per_node = 8"), "[cluster] gpu_memory_gib: is required"},
      {with_line("gpus_per_node", "gpus_per_node = 8\ngpu_memory_gib = 80"), "[cluster] gpu: is required"},
      {with_line("gpus_per_node", "gpus_per_node = 8\ngpu_memory_gib = 0\ngpu = \"h100\""), "[cluster] gpu_memory_gib"},
      {with_line("intra_node_gbps", "intra_node_gbps = 0"), "[cluster] intra_node_gbps"},
      {with_line("inter_node_gbps", "inter_node_gbps = -200"), "[cluster] inter_node_gbps"},
      {with_line("inter_node_gbps", "inter_node_gbps = inf"), "[cluster] inter_node_gbps"},
      {with_line("inter_node_gbps", ""), "[cluster] inter_node_gbps: is required"},
      {with_line("time_limit", "time_limit = \"48h\""), "[cluster] time_limit"},
      {with_line("time_limit", "time_limit = 48"), "[cluster] time_limit"},
      {with_line("time_limit", "time_limit = \"0:05:00\""), "[cluster] time_limit"},
      {with_line("time_limit", "time_limit = \"1:61:00\""), "[cluster] time_limit"},
      {with_line("time_limit", ""), "[cluster] time_limit: is required"},
      {with_line("memory_headroom", "memory_headroom = 1.5"), "[cluster] memory_headroom"},
      {with_line("memory_headroom", "memory_headroom = -0.1"), "[cluster] memory_headroom"},
      {with_line("memory_headroom", "partition = 7"), "[cluster] partition"},
      {with_line("memory_headroom", "account = [1]"), "[cluster] account"},
      {with_line("memory_headroom", "cores = 64"), "unknown key 'cores' in [cluster]"},
      {kCpuCluster + "[nodes]\nx = 1\n", "unknown section [nodes]"},
      {"cluster = 3\n", "'cluster' must be a [section]"},
      {"", "[cluster] is required"},
      {"[cluster\nname = 1", "invalid TOML"},
  };
  for (const Case& c : cases) {
    const std::string msg = input_error_of([&] { parse_cluster(c.text, "cluster.toml"); });
    BOOST_TEST(msg.find("cluster.toml") != std::string::npos, msg);
    BOOST_TEST(msg.find(c.expect) != std::string::npos, "'" << msg << "' should name '" << c.expect << "'");
  }
  // load_cluster names the file it read.
  const std::string msg = input_error_of([] { load_cluster("/nonexistent/cluster.toml"); });
  BOOST_TEST(msg.find("/nonexistent/cluster.toml") != std::string::npos, msg);
}

// Memory of one rank and one node, by hand.
BOOST_AUTO_TEST_CASE(memory_per_rank_and_node) {
  const ClusterSpec c = cpu_cluster();
  const StudyProfile p = profile_a(1000);
  // R = 2, one rank per node: 10 + 160/2 = 90 GiB of weights; node 0: the store maps its rank's
  // block (90), + 2 + 3 private, + the 1 GiB results file = 96 GiB.
  Prediction pr = predict(p, c, Layout{.nodes = 2, .ranks_per_node = 1, .ep = 2, .threads_per_rank = 64});
  BOOST_TEST(pr.memory.weights_per_rank == 90 * GiB);
  BOOST_TEST(pr.memory.rank_bytes == 95 * GiB);
  BOOST_TEST(pr.memory.rank0_bytes == 96 * GiB);
  BOOST_TEST(pr.memory.node_bytes == 96 * GiB);
  BOOST_TEST(pr.exchange_inter_node);
  // Two ranks of the group on one node: the store holds one copy of both blocks (170 GiB), without
  // the store every rank its own (2 x 90).
  pr = predict(p, c, Layout{.nodes = 1, .ranks_per_node = 2, .ep = 2, .threads_per_rank = 32});
  BOOST_TEST(pr.memory.node_bytes == (170 + 2 * 5 + 1) * GiB);
  BOOST_TEST(!pr.exchange_inter_node);
  pr = predict(p, c, Layout{.nodes = 1, .ranks_per_node = 2, .ep = 2, .threads_per_rank = 32, .weight_store = false});
  BOOST_TEST(pr.memory.node_bytes == (180 + 2 * 5 + 1) * GiB);
  // Uneven blocks: 8 experts on 3 ranks, the largest block 3 experts = 60 GiB.
  pr = predict(p, c, Layout{.nodes = 3, .ranks_per_node = 1, .ep = 3, .threads_per_rank = 64});
  BOOST_TEST(pr.memory.weights_per_rank == 70 * GiB);
}

// Profile A on the 100 GiB nodes: R = 1 needs 170 + 5 + 1 GiB: no. R = 2 with both ranks on a node
// maps 170 GiB: no; one rank per node (96 GiB, above): yes. So R = 2, 1 rank per node, 64 threads.
// Time: 160,000 s at 16 threads -> 40,000 s at 64 (linear); at R = 2 the experts' half halves:
// 40,000 x 0.75 = 30,000 s; exchange 3.6e9 steps x 25,000 B over 200 Gbit/s (25e9 B/s) = 3,600 s.
// One group (2 nodes): 33,600 s x 1.25 = 42,000 > 36,000 (10 h). Two groups (4 nodes): 33,600 / 2
// + one chunk (33,600 / 1000 = 33.6) = 16,833.6 s; x 1.25 = 21,042 s -> 21,060 s = 5:51:00.
// --mem: 96 GiB x 1.25 = 120 GiB, capped at the node's 100 GiB.
BOOST_AUTO_TEST_CASE(memory_forces_ep_2_and_time_forces_4_nodes) {
  const ClusterSpec c = cpu_cluster();
  const Allocation a = choose_allocation(profile_a(160000), c, AllocationOptions{.config = "my.toml", .out = "r/x.h5"});
  const Layout& l = a.prediction.layout;
  BOOST_TEST(l.ep == 2);
  BOOST_TEST(l.ranks_per_node == 1);
  BOOST_TEST(l.threads_per_rank == 64);
  BOOST_TEST(l.nodes == 4);
  BOOST_TEST(l.groups() == 2);
  BOOST_TEST(a.plan == JobPlan::OneJob);
  BOOST_TEST(close(a.prediction.seconds, 16833.6));
  BOOST_TEST(close(a.prediction.stages[0].exchange_s, 1800));
  BOOST_TEST(close(a.prediction.stages[0].imbalance_s, 33.6));
  BOOST_TEST(a.prediction.bound == Bound::Compute);
  BOOST_TEST(close(a.prediction.one_rank_seconds, 40000));
  BOOST_TEST(close(a.prediction.efficiency, 40000 / (4 * 16833.6)));
  BOOST_TEST(close(a.prediction.exchange_bytes_per_step, 25000));
  BOOST_TEST(a.slurm_time_s == 21060);
  BOOST_TEST(a.mem_gib_per_node == 100);
  BOOST_TEST(a.script == "slurm/qwen3-30b-a3b.sbatch");
  BOOST_REQUIRE(a.commands.size() == 1u);
  BOOST_TEST(a.commands[0] ==
             "sbatch --nodes=4 --ntasks-per-node=1 --cpus-per-task=64 --gpus-per-node=0 --time=5:51:00 --mem=100G "
             "--export=ALL,CONFIG=my.toml,OUT=r/x.h5,EP=2,WEIGHT_STORE=/tmp/$USER/moetrace-store slurm/qwen3-30b-a3b.sbatch");
}

// Profile A with 300,000 s at 16 threads on at most 2 nodes: one group of R = 2: 75,000 x 0.75 +
// 3,600 = 59,850 s; x 1.25 = 74,812.5 s over runs of 36,000 - 300 s = 2.1 -> 3 runs. R = 2 is not
// sharded (chain.sh's tasks are one process), so the job requeues itself; --time is the limit.
BOOST_AUTO_TEST_CASE(time_limit_forces_3_runs) {
  const Allocation a = choose_allocation(profile_a(300000), cpu_cluster(), AllocationOptions{.max_nodes = 2});
  BOOST_TEST(a.prediction.layout.nodes == 2);
  BOOST_TEST(a.prediction.layout.ep == 2);
  BOOST_TEST(close(a.prediction.seconds, 59850));
  BOOST_TEST(a.plan == JobPlan::Requeue);
  BOOST_TEST(a.jobs == 3);
  BOOST_TEST(a.slurm_time_s == 36000);
}

// Profile B (fits one rank) on at most 2 nodes: one job takes 173,000 s on one node (64 threads:
// every stage / 4) and about 87,800 s on two: too long for 10 h, so chain.sh. A shard task (one
// process, 64 threads) of stage 1 runs the scan (1,000 s) and ceil(1000/k) of 1000 cases of the
// 100,000 s sweep: k = 3 -> 1,000 + 33,400 = 34,400 s x 1.25 > 36,000; k = 4 -> 26,000 s, x 1.25 =
// 32,500 -> 32,520 s = 9:02:00. Stage 2 (50,000 s) and 3 (20,000 s) fit at 4 shards; the final run
// (statistics, 2,000 s) fits one job. Jobs: 3 arrays x 4 + 3 merges + final + report = 17.
// Wall: 4 tasks on 2 slots = 2 rounds per stage: 2 x (26,000 + 12,500 + 5,000) + 2,000 = 89,000 s.
BOOST_AUTO_TEST_CASE(time_limit_forces_a_chain_of_4_shards) {
  const Allocation a = choose_allocation(profile_b(), cpu_cluster(),
                                         AllocationOptions{.max_nodes = 2, .weight_store = false, .config = "c.toml",
                                                           .out = "results/q.h5"});
  BOOST_TEST(a.plan == JobPlan::Chain);
  BOOST_TEST(a.shards == 4);
  BOOST_TEST(a.chain_stages == 3);
  BOOST_TEST(a.jobs == 17);
  BOOST_TEST(close(a.wall_s, 89000));
  BOOST_TEST(close(a.job_s, 26000));
  BOOST_TEST(a.slurm_time_s == 32520);
  BOOST_TEST(a.script == "slurm/chain.sh");
  BOOST_REQUIRE(a.commands.size() == 1u);
  BOOST_TEST(a.commands[0] ==
             "CONFIG=c.toml OUT_DIR=results/q SHARDS=4 STAGES=3 bash slurm/chain.sh --cpus-per-task=64 "
             "--time=9:02:00 --mem=70G");  // node: 50 + 5 + 1 = 56 GiB x 1.25 = 70
}

// Profile B fits one job when time allows: the fewest nodes that finish within the limit.
BOOST_AUTO_TEST_CASE(fewest_nodes_within_the_limit) {
  ClusterSpec c = cpu_cluster();
  c.time_limit_s = 48 * 3600;
  const Allocation a = choose_allocation(profile_b(), c);
  BOOST_TEST(a.plan == JobPlan::OneJob);
  BOOST_TEST(a.prediction.layout.ep == 1);
  BOOST_TEST(a.prediction.seconds * 1.25 <= 48 * 3600.0);
  Layout fewer = a.prediction.layout;
  fewer.nodes -= 1;
  BOOST_TEST(predict(profile_b(), c, fewer).seconds * 1.25 > 48 * 3600.0);
}

// A Mixtral-sized bf16 model on 8 x 80 GB GPUs (72 GiB usable): R = 1 needs 87 + 2 GiB on a GPU:
// no; R = 2: 3 + 42 + 2 = 47 GiB: yes; 8 ranks per node, 96 / 8 = 12 threads each.
BOOST_AUTO_TEST_CASE(gpu_nodes_take_the_smallest_ep_that_fits_a_gpu) {
  const ClusterSpec c = load_cluster(test::source_dir() / "configs/clusters/h100x8-ndr.toml");
  StudyProfile p = profile_a(1000);
  p.model = "Mixtral-8x7B-v0.1";
  p.weights = {.replicated = 3 * GiB, .experts = 84 * GiB};
  const Allocation a = choose_allocation(p, c);
  BOOST_TEST(a.prediction.layout.ep == 2);
  BOOST_TEST(a.prediction.layout.ranks_per_node == 8);
  BOOST_TEST(a.prediction.layout.threads_per_rank == 12);
  BOOST_TEST(a.prediction.memory.gpu_bytes_per_rank == 47 * GiB);
  BOOST_TEST(a.script == "slurm/mixtral-8x7b.sbatch");
  BOOST_TEST(a.commands[0].find("--ntasks-per-node=8 --cpus-per-task=12 --gpus-per-node=8") != std::string::npos,
             a.commands[0]);
  BOOST_TEST(a.commands[0].find("--partition=gpu") != std::string::npos);
  BOOST_TEST(a.commands[0].find(",EP=2,") != std::string::npos);
  const std::string msg = input_error_of([&] { predict(p, c, Layout{.nodes = 1, .ranks_per_node = 16, .ep = 2}); });
  BOOST_TEST(msg.find("16 ranks per node: more than the 8 GPUs per node") != std::string::npos, msg);
}

BOOST_AUTO_TEST_CASE(a_model_that_fits_nowhere_names_the_cluster_file) {
  ClusterSpec c = cpu_cluster();
  c.nodes = 1;  // profile A needs a node per rank of its group
  const std::string msg = input_error_of([&] { choose_allocation(profile_a(1000), c); });
  BOOST_TEST(msg.find("cluster.toml: the study does not fit") != std::string::npos, msg);
}

// Wall time never rises with N at a fixed R. Efficiency T1 / (N TN) never rises either while every
// stage has more chunks than groups (N TN = R T + N chunk); where a stage's chunks fall to the groups
// it may rise once (3 chunks: 2.5 chunks' time on 2 groups, 1 on 3), so it is checked on profile A
// (1000 chunks) alone. Once groups outnumber the chunks the stage is imbalance-bound.
BOOST_AUTO_TEST_CASE(scaling_is_monotone) {
  const ClusterSpec c = cpu_cluster();
  StudyProfile few = profile_a(160000);
  few.stages.push_back(stage("few chunks", 8000, 3, 3, 1000));
  for (int R : {1, 2}) {
    std::vector<int> ns;
    for (int n = R; n <= 64; n *= 2) ns.push_back(n);
    const std::vector<ScalingPoint> curve = scaling_curve(profile_a(160000), c, R, ns);
    const std::vector<ScalingPoint> curve_few = scaling_curve(few, c, R, ns);
    BOOST_REQUIRE(curve.size() == ns.size());
    if (R == 1) BOOST_TEST(close(curve[0].efficiency, 1.0));
    for (std::size_t i = 1; i < curve.size(); ++i) {
      BOOST_TEST(curve[i].seconds < curve[i - 1].seconds, "R " << R << " N " << curve[i].ranks);
      BOOST_TEST(curve_few[i].seconds < curve_few[i - 1].seconds, "R " << R << " N " << curve[i].ranks);
      BOOST_TEST(curve[i].efficiency <= curve[i - 1].efficiency + 1e-12, "R " << R << " N " << curve[i].ranks);
      BOOST_TEST(close(curve[i].exchange_bytes_per_step, R == 1 ? 0.0 : 25000.0));
    }
  }
  const StudyProfile& p = few;
  // 1000 chunks of the sweep over 1024 groups: one chunk each, 24 groups idle; the chunk's time
  // (T / 1000) is mostly compute (T / 1024), so compute-bound. Over 4096 groups the wait (T / 1000 -
  // T / 4096) exceeds the compute (T / 4096): imbalance-bound.
  Prediction pr = predict(p, c, Layout{.nodes = 1024, .ranks_per_node = 1, .ep = 1, .threads_per_rank = 64});
  BOOST_TEST(pr.stages[0].idle_groups == 24);
  BOOST_TEST(pr.stages[0].bound == Bound::Compute);
  BOOST_TEST(close(pr.stages[0].seconds, 40000.0 / 1000));
  pr = predict(p, c, Layout{.nodes = 4096, .ranks_per_node = 1, .ep = 1, .threads_per_rank = 64});
  BOOST_TEST(pr.stages[0].idle_groups == 3096);
  BOOST_TEST(pr.stages[0].bound == Bound::Imbalance);
  BOOST_TEST(pr.bound == Bound::Imbalance);
  std::string msg = input_error_of([&] { scaling_curve(p, c, 2, {3}); });
  BOOST_TEST(msg.find("--ep 2 must divide") != std::string::npos, msg);
  msg = input_error_of([&] { predict(p, c, Layout{.nodes = 3, .ranks_per_node = 1, .ep = 2}); });
  BOOST_TEST(msg == "--ep 2 must divide the number of ranks 3");
  msg = input_error_of([&] { predict(p, c, Layout{.nodes = 1, .ranks_per_node = 1, .ep = 1, .threads_per_rank = 0}); });
  BOOST_TEST(msg.find("every count must be positive") != std::string::npos, msg);
}

// Every number of the JSON appears in the text, formatted as the text formats it.
BOOST_AUTO_TEST_CASE(json_and_text_agree) {
  const ClusterSpec c = cpu_cluster();
  for (const Allocation& a : {choose_allocation(profile_a(160000), c),
                              choose_allocation(profile_b(), c, AllocationOptions{.max_nodes = 2}),
                              choose_allocation(profile_a(300000), c, AllocationOptions{.max_nodes = 2})}) {
    const std::vector<ScalingPoint> curve = scaling_curve(profile_a(160000), c, 2, {2, 4, 8});
    const std::string text = allocation_text(a, curve);
    BOOST_TEST_MESSAGE(text);  // --log_level=message shows the outputs
    const nlohmann::json j = nlohmann::json::parse(allocation_json(a, curve).dump());
    auto has = [&](const std::string& s) {
      BOOST_TEST(text.find(s) != std::string::npos, "text lacks '" << s << "':\n" << text);
    };
    const auto& l = j["layout"];
    has(fmt::format("nodes              {}\n", l["nodes"].get<int>()));
    has(fmt::format("ranks per node     {}\n", l["ranks_per_node"].get<int>()));
    has(fmt::format("--ep (R)           {}\n", l["ep"].get<int>()));
    has(fmt::format("threads per rank   {}\n", l["threads_per_rank"].get<int>()));
    has(fmt::format("--mem per node     {}G\n", j["memory_gib"]["slurm_mem_per_node"].get<int>()));
    has(fmt::format("node               {:.1f}\n", j["memory_gib"]["node"].get<double>()));
    has(fmt::format("rank 0             {:.1f}\n", j["memory_gib"]["rank0"].get<double>()));
    const auto& t = j["time"];
    has(fmt::format("--time             {} ", t["slurm_time"].get<std::string>()));
    has(fmt::format("plan               {}\n", t["plan"].get<std::string>()));
    has(fmt::format("study wall s       {:.1f} ", t["wall_s"].get<double>()));
    has(fmt::format("efficiency         {:.2f}\n", t["efficiency"].get<double>()));
    if (t["plan"] != "one job") has(fmt::format("jobs               {}\n", t["jobs"].get<int>()));
    for (const auto& s : j["stages"])
      has(fmt::format("{:>12.1f} {:>12.1f} {:>12.1f} {:>12.1f} {:>5}  {}", s["seconds"].get<double>(),
                      s["compute_s"].get<double>(), s["exchange_s"].get<double>(), s["imbalance_s"].get<double>(),
                      s["idle_groups"].get<int>(), s["bound"].get<std::string>()));
    for (const auto& s : j["scaling"])
      has(fmt::format("{:>6} {:>6} {:>7} {:>12.1f} {:>6.2f}", s["ranks"].get<int>(), s["nodes"].get<int>(),
                      s["groups"].get<int>(), s["seconds"].get<double>(), s["efficiency"].get<double>()));
    for (const auto& cmd : j["commands"]) has("  " + cmd.get<std::string>() + "\n");
    BOOST_TEST(t["slurm_time_s"].get<std::int64_t>() == a.slurm_time_s);
  }
}

// Without rates the time is not predicted: the fewest nodes that fit, --time = the limit.
BOOST_AUTO_TEST_CASE(no_rates_no_time) {
  StudyProfile p = profile_a(0);
  const Allocation a = choose_allocation(p, cpu_cluster());
  BOOST_TEST(!a.time_known);
  BOOST_TEST(a.plan == JobPlan::OneJob);
  BOOST_TEST(a.prediction.layout.nodes == 2);  // R = 2, one rank per node (memory, as above)
  BOOST_TEST(a.slurm_time_s == 36000);
  BOOST_TEST(allocation_json(a)["time"]["known"] == false);
}

// A localize study too long for one job is a requeued localize.sbatch job (chain.sh shards `run`
// only); with one rank per node it still passes EP. Bad options are InputErrors.
BOOST_AUTO_TEST_CASE(localize_requeues_and_options_are_checked) {
  StudyProfile p = profile_b();
  p.protocol = "localize";
  const Allocation a = choose_allocation(p, cpu_cluster(), AllocationOptions{.max_nodes = 1});
  BOOST_TEST(a.plan == JobPlan::Requeue);
  BOOST_TEST(a.jobs == 7);  // 173,000 s x 1.25 / 35,700 s = 6.06
  BOOST_TEST(a.script == "slurm/localize.sbatch");
  BOOST_TEST(a.commands[0].find("--nodes=1 --ntasks-per-node=1 --cpus-per-task=64") != std::string::npos, a.commands[0]);
  BOOST_TEST(a.commands[0].find(",EP=1,") != std::string::npos, a.commands[0]);
  BOOST_TEST(input_error_of([&] { choose_allocation(p, cpu_cluster(), AllocationOptions{.max_nodes = -1}); }).find("max nodes") == 0u);
  BOOST_TEST(input_error_of([&] { choose_allocation(p, cpu_cluster(), AllocationOptions{.margin = -0.5}); }).find("margin") == 0u);
}

// The choices docs/distribution.md states ("Choosing N and R"), with the weights of its cost-model
// table: Qwen3-30B-A3B (2.9 + 54.0 GiB bf16, 128 experts) and Mixtral-8x7B (3.0 + 84.0 GiB, 8
// experts), float32 on CPU nodes (twice), 4 GiB of working memory per rank.
BOOST_AUTO_TEST_CASE(documented_choices_on_the_example_clusters) {
  const ClusterSpec cpu = load_cluster(test::source_dir() / "configs/clusters/cpu-64c-256g.toml");
  const ClusterSpec gpu = load_cluster(test::source_dir() / "configs/clusters/h100x8-ndr.toml");
  auto model = [](double replicated_gib, double experts_gib, int experts, double scale) {
    StudyProfile p = profile_a(3600);
    p.experts = experts;
    p.weights = {.replicated = static_cast<std::uint64_t>(replicated_gib * scale * GiB),
                 .experts = static_cast<std::uint64_t>(experts_gib * scale * GiB)};
    p.activation_bytes = 2 * GiB, p.prepared_cache_bytes = 2 * GiB, p.results_bytes = GiB;
    return p;
  };
  struct Case { StudyProfile p; const ClusterSpec& c; int ep, ranks_per_node; };
  const std::vector<Case> cases{
      {model(2.9, 54.0, 128, 1), gpu, 1, 8},  // 57 GiB fits 72 GiB of an H100
      {model(3.0, 84.0, 8, 1), gpu, 2, 8},    // 87 GiB does not; 45 GiB does
      {model(2.9, 54.0, 128, 2), cpu, 1, 1},  // 114 GiB of float32 within 230 GiB
      {model(3.0, 84.0, 8, 2), cpu, 1, 1},    // 174 GiB + 5 within 230 GiB
  };
  for (const Case& c : cases) {
    const Allocation a = choose_allocation(c.p, c.c);
    BOOST_TEST(a.prediction.layout.ep == c.ep);
    BOOST_TEST(a.prediction.layout.ranks_per_node == c.ranks_per_node);
  }
}
