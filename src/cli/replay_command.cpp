// `moetrace replay`: recompute a conformance fixture's datasets from its inputs, on one rank or on an
// expert-parallel group of ranks (--ep R under mpirun -np R; docs/distribution.md).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>

#include "backend/backend_registry.h"
#include "cli/commands.h"
#include "comm/communicator.h"
#include "comm/errors.h"
#include "comm/expert_parallel_exchange.h"
#include "engine/device_model.h"
#include "model/model_weights.h"
#include "protocols/replay.h"
#include "util/error.h"
#include "util/input_file.h"
#include "util/logging.h"

namespace moetrace::cli {
namespace {

// What a fixture asks of the model, checked before the engine runs (exit 2 naming the file and the
// fact): token ids inside the vocabulary, deactivated experts that exist and leave at least top_k
// experts in every layer, finite noise.
void check_facts_against_model(const std::vector<FixtureFact>& facts, const ModelConfig& mc, const std::string& path) {
  for (const FixtureFact& f : facts) {
    const std::string where = fmt::format("{}: {}", path, f.group);
    for (std::size_t i = 0; i < f.ids.size(); ++i)
      if (f.ids[i] < 0 || f.ids[i] >= mc.vocab_size)
        fail_input("{}/ids[{}] = {} is outside the model's vocabulary of {}", where, i, f.ids[i], mc.vocab_size);
    for (auto [name, id] : {std::pair{"true_id", f.true_id}, std::pair{"foil_id", f.foil_id}})
      if (id < 0 || id >= mc.vocab_size)
        fail_input("{}@{} = {} is outside the model's vocabulary of {}", where, name, id, mc.vocab_size);
    std::vector<std::vector<bool>> off(mc.num_layers, std::vector<bool>(mc.num_experts, false));
    for (auto [l, e] : f.deactivate) {
      if (l < 0 || l >= mc.num_layers || e < 0 || e >= mc.num_experts)
        fail_input("{}/deactivate/experts: (layer {}, expert {}) does not exist in a model of {} layers of {} experts",
                   where, l, e, mc.num_layers, mc.num_experts);
      off[l][e] = true;
    }
    for (int l = 0; l < mc.num_layers; ++l) {
      const int left = static_cast<int>(std::count(off[l].begin(), off[l].end(), false));
      if (left < mc.top_k)
        fail_input("{}/deactivate/experts leaves {} expert(s) in layer {}, fewer than the {} the model routes each "
                   "token to (num_experts_per_tok)", where, left, l, mc.top_k);
    }
    for (std::size_t s = 0; s < f.noise.size(); ++s)
      for (float v : f.noise[s])
        if (!std::isfinite(v)) fail_input("{}/noise: sample {} holds a non-finite value ({})", where, s, v);
  }
}

}  // namespace

void register_replay_command(CLI::App& app) {
  struct Options {
    std::string model, in, out, mode = "fast", backend = "cpu";
    bool clean_only = false;
    int ep = 1;
  };
  auto opts = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("replay", "Recompute a conformance fixture from its inputs");
  cmd->footer("Recompute a conformance fixture from its inputs.\n"
      "Reads the inputs of every facts/<n> group of a file laid out like ../shared/fixtures/<model>.golden.h5\n"
      "(ids, subject, true_id/foil_id, noise, deactivate/experts) and writes every dataset the engine\n"
      "computes under the same names and shapes: clean/* (logits, hidden, attn_out, moe_out, router_logits,\n"
      "topk_idx, topk_w, attribute contrast), trace/* (corrupted and every restoration) and\n"
      "deactivate/logits_last. A non-finite output (weights that overflow float32) is exit 2 naming the\n"
      "model, the fixture and the dataset; nothing is written.\n\n"
      "Expert parallelism: with --ep R under `mpirun -np R`, the experts of every layer are split into R\n"
      "contiguous blocks, one per rank (uneven counts allowed); attention, norms and embeddings are\n"
      "replicated. The output is bit-identical for every R; rank 0 writes it and logs.\n\n"
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
  cmd->add_flag("--clean-only", opts->clean_only, "write only facts/<n>/clean/*");
  cmd->add_option("--ep", opts->ep,
                  "expert-parallel group size: run under `mpirun -np R` with the same R; rank r holds\n"
                  "experts expert_block(E, r, R) of every layer")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->callback([opts] {
    auto world = make_world_communicator();
    Communicator& comm = *world;
    // One rank's unexpected failure aborts the job with its message instead of hanging the others.
    run_or_abort(comm, [&] {
      if (comm.size() != opts->ep)
        fail_all(comm,
                 "replay --ep {} needs exactly {} MPI rank{} but this job has {}: run `mpirun -np {} moetrace "
                 "replay --ep {} ...` (or leave out --ep for one rank)",
                 opts->ep, opts->ep, opts->ep == 1 ? "" : "s", comm.size(), opts->ep, opts->ep);
      const int rank = comm.rank(), R = comm.size();
      // Log lines only from rank 0; the other ranks keep warnings and errors.
      if (rank != 0 && spdlog::get_level() < spdlog::level::warn) spdlog::set_level(spdlog::level::warn);

      const auto t0 = std::chrono::steady_clock::now();
      on_every_rank(comm, [&] {
        require_file_or_directory(opts->model, "--model");
        require_regular_file(opts->in, "--in");  // exit 2 naming it, never CLI11's generic code
        return 0;
      });
      ModelWeights weights = on_every_rank(comm, [&] { return load_model(opts->model); });
      const ModelConfig& config = weights.config;
      auto backend = on_every_rank(comm, [&] { return make_backend(opts->backend); });
      const ExpertRange local = expert_block(config.num_experts, rank, R);
      DeviceModel model = upload_model(weights, *backend, local);
      spdlog::info("loaded {} ({} layers, {} experts, top-{}) on {}: {:.1f} MiB of weights", opts->model,
                   config.num_layers, config.num_experts, config.top_k, backend->name(),
                   backend->weight_bytes() / 1048576.0);
      std::optional<ExpertParallelExchange> exchange;
      if (R > 1) {
        exchange.emplace(comm);
        std::string blocks;
        for (int r = 0; r < R; ++r) {
          const ExpertRange b = expert_block(config.num_experts, r, R);
          blocks += fmt::format("{}rank {}: [{}, {})", r ? ", " : "", r, b.begin, b.end);
        }
        spdlog::info("expert parallel over {} {} ranks; experts per layer {}", R, comm.name(), blocks);
      }
      Engine engine(model, *backend, exchange ? &*exchange : nullptr);
      ReplayOptions ro;
      ro.mode = opts->mode == "full" ? PatchMode::FullRecompute : PatchMode::FastPath;
      ro.traces = !opts->clean_only;
      const std::vector<FixtureFact> facts =
          on_every_rank(comm, [&] {
            auto f = read_fixture_inputs(opts->in, config.hidden_size);
            check_facts_against_model(f, config, opts->in);
            return f;
          });
      std::vector<FactOutputs> outputs;
      for (const FixtureFact& fact : facts) {
        outputs.push_back(replay_fact(engine, fact, ro));
        on_every_rank(comm, [&] {
          require_finite_outputs(outputs.back(), opts->model, opts->in);
          return 0;
        });
      }
      std::string write_error;
      if (rank == 0) {
        try {
          write_replay_outputs(opts->out, outputs,
                               {{"arch", to_string(config.arch)}, {"model_dir", opts->model},
                                {"replayed_from", opts->in}, {"patch_mode", opts->mode}});
        } catch (const InputError& e) {
          if (R == 1) throw;
          write_error = e.what();
        }
      }
      check_all(comm, write_error.empty(), write_error);
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      spdlog::info("replayed {} facts into {} in {:.2f} s ({} layer-token steps)", outputs.size(), opts->out, secs,
                   engine.layer_token_steps());
    });
  });
}

}  // namespace moetrace::cli
