#include "cli/command_session.h"

#include <sys/resource.h>

#include <chrono>

#include "backend/backend_registry.h"
#include "backend/weight_store_cache.h"
#include "cli/provenance.h"
#include "comm/errors.h"
#include "util/logging.h"

namespace moetrace::cli {
namespace {

std::uint64_t page_faults() {
  struct rusage u {};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<std::uint64_t>(u.ru_minflt + u.ru_majflt);
}

}  // namespace

bool check_ranks(Communicator& world, int ep) {
  const int N = world.size(), R = ep;
  if (R < 1 || N % R != 0)
    fail_all(world, "--ep {} must divide the number of MPI ranks {} (N/R expert-parallel groups of R ranks)", R, N);
  const bool writer = world.rank() == 0;
  if (!writer && spdlog::get_level() < spdlog::level::warn) spdlog::set_level(spdlog::level::warn);
  return writer;
}

CommandSession::CommandSession(Communicator& world, const SessionSpec& spec) : world_(world), spec_(spec) {
  const int R = spec.ep;
  group_ = world.split(world.rank() / R);
  leaders_ = world.split(group_->rank() == 0 ? 0 : 1, world.rank());
  backend_ = on_every_rank(world, [&] { return make_backend(spec.backend); });
  load_weights();
  if (R > 1) exchange_.emplace(*group_);
  engine_ = std::make_unique<Engine>(model_, *backend_, exchange_ ? &*exchange_ : nullptr);
  log_model();
}

// The tensors (headers), then the weights: from the store when one is named and the backend has a
// layout for it, else uploaded from the checkpoint (with the finite scan). One log line says what
// the load cost.
void CommandSession::load_weights() {
  const auto t0 = std::chrono::steady_clock::now();
  const std::uint64_t faults0 = page_faults();
  const bool use_store = !spec_.weight_store.empty() && !backend_->weight_layout().empty();
  if (!spec_.weight_store.empty() && !use_store)
    spdlog::warn("weight store {}: backend {} reads no store yet; loading from the checkpoint (docs/weights.md)",
                 spec_.weight_store.string(), backend_->name());
  LoadOptions load;
  load.scan_weights = !use_store;
  weights_ = on_every_rank(world_, [&] { return load_model(spec_.model_path, load); });
  const ExpertRange local = expert_block(weights_.config.num_experts, group_->rank(), spec_.ep);
  if (use_store) {
    store_ = on_every_rank(world_, [&] {
      auto s = open_weight_store(spec_.weight_store, weights_, *backend_, [&] { return make_backend(spec_.backend); }).store;
      check_store_finite(*s, weights_);
      return s;
    });
  }
  model_ = on_every_rank(world_, [&] { return upload_model(weights_, *backend_, local, store_.get()); });
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::uint64_t faults = page_faults() - faults0;
  if (store_)
    spdlog::info("weights: mapped from the weight store {} in {:.2f} s ({} page faults)", store_->path().string(), secs,
                 faults);
  else
    spdlog::info("weights: read, checked and packed from the checkpoint in {:.1f} s ({} page faults); a packed weight "
                 "store makes later loads a memory map: set [model] weight_store = \"DIR\" or --weight-store DIR "
                 "(docs/weights.md)", secs, faults);
}

void CommandSession::log_model() const {
  const ModelConfig& mc = weights_.config;
  const int N = world_.size(), R = spec_.ep;
  spdlog::info("model {}: {} ({} layers, {} experts, top-{}), {:.1f} MiB of weights per rank on {}; {} rank(s) in {} "
               "group(s) of {}", spec_.model_path.string(), to_string(mc.arch), mc.num_layers, mc.num_experts,
               mc.top_k, backend_->weight_bytes() / 1048576.0, backend_->name(), N, N / R, R);
  if (R > 1) {
    std::string blocks;
    for (int r = 0; r < R; ++r) {
      const ExpertRange b = expert_block(mc.num_experts, r, R);
      blocks += fmt::format("{}rank {}: [{}, {})", r ? ", " : "", r, b.begin, b.end);
    }
    spdlog::info("expert parallel over {} {} ranks{}; experts per layer {}", R, group_->name(),
                 N / R > 1 ? fmt::format(" in each of {} groups", N / R) : std::string(), blocks);
  }
}

Provenance CommandSession::provenance(const std::string& config_path, const std::string& config_text) const {
  std::map<std::string, std::string> known;
  if (store_)
    for (const FileIdentity& f : store_->identity().files) known[f.name] = f.sha256;
  return collect_provenance(config_path, config_text, *weights_.checkpoint, backend_->name(), world_.size(), known);
}

}  // namespace moetrace::cli
