// `moetrace replay`: recompute a conformance fixture's datasets from its inputs, on one rank or on
// MPI ranks in expert-parallel groups (--ep R, R divides N; docs/distribution.md).
#include <chrono>
#include <optional>

#include "cli/command_session.h"
#include "cli/commands.h"
#include "comm/communicator.h"
#include "comm/errors.h"
#include "protocols/replay.h"
#include "util/error.h"
#include "util/input_file.h"
#include "util/logging.h"

namespace moetrace::cli {
namespace {

struct ReplayCommandOptions {
  std::string model, in, out, mode = "fast", backend = "cpu", weight_store;
  bool clean_only = false;
  int ep = 1;
};

// Every group replays every fact (the groups beyond the first only repeat the work); rank 0 writes.
void run(const ReplayCommandOptions& o, Communicator& world) {
  check_ranks(world, o.ep);
  const auto t0 = std::chrono::steady_clock::now();
  on_every_rank(world, [&] {
    require_file_or_directory(o.model, "--model");
    require_regular_file(o.in, "--in");  // exit 2 naming it, never CLI11's generic code
    return 0;
  });
  CommandSession session(world, {o.model, o.backend, o.weight_store, o.ep});
  const ModelConfig& config = session.model_config();
  ReplayOptions ro;
  ro.mode = o.mode == "full" ? PatchMode::FullRecompute : PatchMode::FastPath;
  ro.traces = !o.clean_only;
  const std::vector<FixtureFact> facts = on_every_rank(world, [&] { return read_replay_inputs(o.in, config); });
  std::vector<FactOutputs> outputs;
  for (const FixtureFact& fact : facts) {
    outputs.push_back(replay_fact(session.engine(), fact, ro));
    on_every_rank(world, [&] {
      require_finite_outputs(outputs.back(), o.model, o.in);
      return 0;
    });
  }
  std::string write_error;
  if (world.rank() == 0) {
    try {
      write_replay_outputs(o.out, outputs,
                           {{"arch", to_string(config.arch)}, {"model_dir", o.model}, {"replayed_from", o.in},
                            {"patch_mode", o.mode}});
    } catch (const InputError& e) {
      if (world.size() == 1) throw;
      write_error = e.what();
    }
  }
  check_all(world, write_error.empty(), write_error);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  spdlog::info("replayed {} facts into {} in {:.2f} s ({} layer-token steps)", outputs.size(), o.out, secs,
               session.engine().layer_token_steps());
}

}  // namespace

void register_replay_command(CLI::App& app) {
  auto opts = std::make_shared<ReplayCommandOptions>();
  CLI::App* cmd = app.add_subcommand("replay", "Recompute a conformance fixture from its inputs");
  cmd->footer("Recompute a conformance fixture from its inputs.\n"
      "Reads the inputs of every facts/<n> group of a file laid out like ../shared/fixtures/<model>.golden.h5\n"
      "(ids, subject, true_id/foil_id, noise, deactivate/experts) and writes every dataset the engine\n"
      "computes under the same names and shapes: clean/* (logits, hidden, attn_out, moe_out, router_logits,\n"
      "topk_idx, topk_w, attribute contrast), trace/* (corrupted and every restoration) and\n"
      "deactivate/logits_last. A non-finite output (weights that overflow float32) is exit 2 naming the\n"
      "model, the fixture and the dataset; nothing is written.\n\n"
      "Expert parallelism: `mpirun -np N moetrace replay --ep R ...` (R divides N, as for run and localize)\n"
      "splits the ranks into N/R groups of R; in a group the experts of every layer are split into R\n"
      "contiguous blocks, one per rank (uneven counts allowed); attention, norms and embeddings are\n"
      "replicated. Every group replays every fact (more groups only repeat the work). The output is\n"
      "bit-identical for every N and R; rank 0 writes it and logs.\n\n"
      "Examples:\n"
      "  moetrace replay --model ../shared/fixtures/qwen3moe-tiny \\\n"
      "      --in ../shared/fixtures/qwen3moe-tiny.golden.h5 --out qwen3.replay.h5\n"
      "  mpirun -np 2 moetrace replay --ep 2 --model ../shared/fixtures/qwen3moe-tiny \\\n"
      "      --in ../shared/fixtures/qwen3moe-tiny.golden.h5 --out qwen3.ep2.replay.h5");
  cmd->add_option("--model", opts->model, "Hugging Face model folder (config.json + safetensors)")->required();
  cmd->add_option("--in", opts->in, "fixture file whose inputs are replayed")->required();
  cmd->add_option("--out", opts->out, "output HDF5 file (overwritten; written by rank 0 only)")->required();
  cmd->add_option("--mode", opts->mode,
                  "how restorations are evaluated: 'fast' continues the noised run from the patched layer and\n"
                  "position (the default); 'full' recomputes every run from the embeddings")
      ->check(CLI::IsMember({"fast", "full"}))
      ->capture_default_str();
  cmd->add_option("--backend", opts->backend, "cpu, cpu-bf16, or cuda / cuda-bf16 in a CUDA build (docs/cuda.md)")
      ->capture_default_str();
  cmd->add_option("--weight-store", opts->weight_store, kWeightStoreHelp);
  cmd->add_flag("--clean-only", opts->clean_only, "write only facts/<n>/clean/*");
  cmd->add_option("--ep", opts->ep,
                  "expert-parallel group size R (divides the rank count N); rank r of a group holds\n"
                  "experts expert_block(E, r, R) of every layer")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->callback([opts] {
    auto world = make_world_communicator();
    // One rank's unexpected failure aborts the job with its message instead of hanging the others.
    run_or_abort(*world, [&] { run(*opts, *world); });
  });
}

}  // namespace moetrace::cli
