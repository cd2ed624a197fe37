#pragma once
// What every command that runs the model builds, built one way (docs/distribution.md, "Ranks and
// groups"; docs/weights.md): N MPI ranks in N/R expert-parallel groups of R consecutive ranks (R =
// --ep divides N, for every command), the model's tensors (headers only), the backend, the weights
// (uploaded from the checkpoint, or mapped from the packed weight store), the expert exchange of the
// group and the engine. Adding a command, a backend or a way of loading weights touches this file.
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "backend/backend.h"
#include "comm/communicator.h"
#include "comm/expert_parallel_exchange.h"
#include "engine/device_model.h"
#include "engine/forward.h"
#include "model/model_weights.h"
#include "model/weight_store.h"
#include "results/results_file.h"

namespace moetrace::cli {

struct SessionSpec {
  std::filesystem::path model_path;
  std::string backend = "cpu";
  std::filesystem::path weight_store;  // empty: load from the checkpoint
  int ep = 1;
};

// The help text of --weight-store, the same for every command that has it.
inline constexpr const char* kWeightStoreHelp =
    "DIR: the packed weight store (docs/weights.md): built there on first use (once, under a lock), then\n"
    "memory-mapped read-only and shared by every rank and job on the node; overrides the config's\n"
    "[model] weight_store";

class CommandSession {
 public:
  // Collective over `world`: every rank fails together (exit 2) on bad input.
  CommandSession(Communicator& world, const SessionSpec& spec);
  CommandSession(const CommandSession&) = delete;
  CommandSession& operator=(const CommandSession&) = delete;

  int ranks() const { return world_.size(); }
  int group_size() const { return spec_.ep; }
  Communicator& world() { return world_; }
  Communicator& group() { return *group_; }
  Communicator& leaders() { return *leaders_; }
  const ModelWeights& weights() const { return weights_; }
  const ModelConfig& model_config() const { return weights_.config; }
  Backend& backend() { return *backend_; }
  Engine& engine() { return *engine_; }
  const ExpertParallelExchange* exchange() const { return exchange_ ? &*exchange_ : nullptr; }
  // Provenance of a results file made by this session (the model files' SHA-256 from the weight
  // store when there is one: recorded when it was built from the same bytes).
  Provenance provenance(const std::string& config_path, const std::string& config_text) const;

 private:
  void load_weights();
  void log_model() const;

  Communicator& world_;
  SessionSpec spec_;
  std::unique_ptr<Communicator> group_, leaders_;
  ModelWeights weights_;
  std::unique_ptr<Backend> backend_;
  std::shared_ptr<const WeightStoreFile> store_;
  DeviceModel model_;
  std::optional<ExpertParallelExchange> exchange_;
  std::unique_ptr<Engine> engine_;
};

// --ep R against the rank count N (an InputError on every rank unless R divides N); log lines from
// the writing rank only (the others keep warnings and errors). Returns whether this is the writing
// rank (world rank 0).
bool check_ranks(Communicator& world, int ep);

}  // namespace moetrace::cli
