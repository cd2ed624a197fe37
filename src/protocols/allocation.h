#pragma once
// From a StudyProfile (protocols/study_profile.h) and a cluster description to a Slurm allocation:
// memory per rank and node, wall time per stage at a layout, the smallest --ep that fits, nodes,
// ranks, threads, shards or requeued runs, --time and --mem, and the command lines of slurm/ to
// submit it (docs/distribution.md, "Planning a study: allocation", states every rule used here).
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "protocols/study_profile.h"

namespace moetrace {

// A cluster description file ([cluster] table; docs/distribution.md lists the keys).
struct ClusterSpec {
  std::string name;
  int nodes = 0;                 // nodes one may ask for
  int cores_per_node = 0;
  double memory_gib_per_node = 0;
  int gpus_per_node = 0;         // 0: CPU nodes
  double gpu_memory_gib = 0;     // required when gpus_per_node > 0
  std::string gpu;               // names the GPU cost model; required when gpus_per_node > 0
  double intra_node_gbps = 0;    // Gbit/s between two ranks of one node (per rank)
  double inter_node_gbps = 0;    // Gbit/s out of one node (shared by its ranks)
  std::int64_t time_limit_s = 0; // per job
  std::string time_limit;        // as written ([D-]HH:MM:SS)
  std::string partition, account;  // optional
  double memory_headroom = 0.10;   // share of each node's (and GPU's) memory kept free
  std::string source;              // the file, for messages
  bool gpu_nodes() const { return gpus_per_node > 0; }
};

// Reads and checks a cluster file: every key typed and ranged, unknown keys refused; errors are
// InputErrors naming the file and the key.
ClusterSpec load_cluster(const std::filesystem::path& toml);
ClusterSpec parse_cluster(const std::string& text, const std::string& origin);

// "[D-]HH:MM:SS" (Slurm's --time) in seconds; -1 when malformed.
std::int64_t parse_slurm_time(const std::string& s);
// Seconds as Slurm's --time, "H:MM:SS" (hours may exceed 24).
std::string format_slurm_time(std::int64_t seconds);

// Where the ranks go. On GPU nodes each rank has one GPU; threads_per_rank is its CPU share.
struct Layout {
  int nodes = 1;
  int ranks_per_node = 1;
  int ep = 1;                // R: ranks per expert-parallel group
  int threads_per_rank = 1;
  bool weight_store = true;  // weights mapped from the packed store: one copy per node in the page cache
  int ranks() const { return nodes * ranks_per_node; }
  int groups() const { return ranks() / ep; }
};

enum class Bound { Compute, Exchange, Imbalance };
const char* bound_name(Bound b);

struct StagePrediction {
  std::string name;
  double compute_s = 0;    // the stage's compute / groups
  double exchange_s = 0;   // the stage's exchange / groups
  double imbalance_s = 0;  // the wait for the last chunk, and idle groups
  double seconds = 0;      // the sum
  int idle_groups = 0;     // groups without a chunk (fewer chunks than groups)
  Bound bound = Bound::Compute;
};

struct MemoryPrediction {
  std::uint64_t weights_per_rank = 0;  // replicated + the rank's expert block
  std::uint64_t private_per_rank = 0;  // activations + prepared-case cache
  std::uint64_t rank_bytes = 0;        // a rank other than 0: weights + private
  std::uint64_t rank0_bytes = 0;       // rank 0: + the results file's buffers
  std::uint64_t node_bytes = 0;        // node 0 (the fullest): weights held or mapped + every rank's private bytes
  std::uint64_t gpu_bytes_per_rank = 0;  // GPU nodes: weights + activations on the rank's GPU (0 on CPU nodes)
};

struct Prediction {
  Layout layout;
  MemoryPrediction memory;
  std::vector<StagePrediction> stages;
  double exchange_bytes_per_step = 0;  // bytes one rank sends per layer-token step at this R
  bool exchange_inter_node = false;    // an EP group spans nodes
  double startup_s = 0;                // the profile's startup (weights, provenance), once per job
  double seconds = 0;                  // predicted wall time (the stages' sum and the startup)
  double one_rank_seconds = 0;         // T1: one rank, same threads, R = 1, no exchange
  double efficiency = 0;               // T1 / (N * TN)
  Bound bound = Bound::Compute;        // the largest of the summed parts
};

// Memory and time of a study at a layout on a cluster (the cluster gives links, cores and whether
// ranks are GPUs). Assumptions (docs/distribution.md): compute seconds scale linearly with threads
// from the profile's calibrated_threads up to the cores; EP divides the MoE share by R, not
// attention; a stage's time is its work / groups plus one chunk. A layout with a count below 1, R not
// dividing N, or more ranks per node than GPUs is an InputError.
Prediction predict(const StudyProfile& profile, const ClusterSpec& cluster, const Layout& layout);

struct AllocationOptions {
  int max_nodes = 0;        // 0: the cluster's nodes
  double margin = 0.25;     // --time = predicted x (1 + margin), --mem = node bytes x (1 + margin)
  bool weight_store = true;
  // For the command lines only.
  std::string config = "CONFIG.toml";
  std::string out = "results/study.h5";
  std::string weight_store_dir = "/tmp/$USER/moetrace-store";
};

enum class JobPlan {
  OneJob,   // one job within the time limit
  Requeue,  // one job that stops before its limit, saves, requeues itself and resumes (jobs runs)
  Chain,    // slurm/chain.sh: arrays of shards of the per-case stages, merges, a final run
};
const char* job_plan_name(JobPlan p);

struct Allocation {
  ClusterSpec cluster;
  AllocationOptions options;
  std::string protocol, model;
  Prediction prediction;     // the job's layout (for a chain: one shard task's layout)
  bool time_known = true;    // the profile has seconds
  JobPlan plan = JobPlan::OneJob;
  int jobs = 1;              // runs of the job (Requeue) or jobs a chain submits (Chain)
  int shards = 0;            // Chain: SHARDS
  int chain_stages = 0;      // Chain: STAGES
  double wall_s = 0;         // predicted wall time of the whole study (queue waits not counted)
  double job_s = 0;          // predicted time of the longest single job
  std::int64_t slurm_time_s = 0;
  std::int64_t mem_gib_per_node = 0;
  std::string script;        // the slurm/ script submitted
  std::vector<std::string> commands;
  std::vector<std::string> notes;
};

Allocation choose_allocation(const StudyProfile& profile, const ClusterSpec& cluster, const AllocationOptions& options = {});

struct ScalingPoint {
  int ranks = 0, nodes = 0, groups = 0, ep = 1;
  double seconds = 0, efficiency = 0, exchange_bytes_per_step = 0;
  Bound bound = Bound::Compute;
};

// Predicted wall time and efficiency at each N for a given R, with the ranks per node and threads
// choose_allocation would use at that R (where R fits no node: the widest ranks, memory aside); N
// must be a multiple of R and spread evenly over the nodes, else an InputError. N may exceed the
// cluster's nodes (a what-if).
std::vector<ScalingPoint> scaling_curve(const StudyProfile& profile, const ClusterSpec& cluster, int ep,
                                        const std::vector<int>& ranks, bool weight_store = true);

std::string allocation_text(const Allocation& a, const std::vector<ScalingPoint>& curve = {});
nlohmann::json allocation_json(const Allocation& a, const std::vector<ScalingPoint>& curve = {});

}  // namespace moetrace
