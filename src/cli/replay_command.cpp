// `moetrace replay`: recompute a conformance fixture's datasets from its inputs.
#include <chrono>

#include "backend/backend.h"
#include "cli/commands.h"
#include "engine/device_model.h"
#include "model/model_weights.h"
#include "protocols/replay.h"
#include "util/error.h"
#include "util/logging.h"

namespace moetrace::cli {

void register_replay_command(CLI::App& app) {
  struct Options {
    std::string model, in, out, mode = "fast";
    bool clean_only = false;
  };
  auto opts = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "replay",
      "Recompute a conformance fixture from its inputs.\n"
      "Reads the inputs of every facts/<n> group of a file laid out like ../shared/fixtures/<model>.golden.h5\n"
      "(ids, subject, true_id/foil_id, noise, deactivate/experts) and writes every dataset the engine\n"
      "computes under the same names and shapes: clean/* (logits, hidden, attn_out, moe_out, router_logits,\n"
      "topk_idx, topk_w, attribute contrast), trace/* (corrupted and every restoration) and\n"
      "deactivate/logits_last.\n\n"
      "Example:\n"
      "  moetrace replay --model ../shared/fixtures/qwen3moe-tiny \\\n"
      "      --in ../shared/fixtures/qwen3moe-tiny.golden.h5 --out qwen3.replay.h5");
  cmd->add_option("--model", opts->model, "Hugging Face model folder (config.json + safetensors)")->required();
  cmd->add_option("--in", opts->in, "fixture file whose inputs are replayed")->required()->check(CLI::ExistingFile);
  cmd->add_option("--out", opts->out, "output HDF5 file (overwritten)")->required();
  cmd->add_option("--mode", opts->mode,
                  "how restorations are evaluated: 'fast' continues the noised run from the patched layer and\n"
                  "position (the default); 'full' recomputes every run from the embeddings")
      ->check(CLI::IsMember({"fast", "full"}))
      ->capture_default_str();
  cmd->add_flag("--clean-only", opts->clean_only, "write only facts/<n>/clean/*");
  cmd->callback([opts] {
    const auto t0 = std::chrono::steady_clock::now();
    ModelWeights weights = load_model(opts->model);
    auto backend = make_cpu_backend();
    DeviceModel model = upload_model(weights, *backend);
    spdlog::info("loaded {} ({} layers, {} experts, top-{}) on {}: {:.1f} MiB of weights", opts->model,
                 weights.config.num_layers, weights.config.num_experts, weights.config.top_k, backend->name(),
                 backend->weight_bytes() / 1048576.0);
    Engine engine(model, *backend);
    ReplayOptions ro;
    ro.mode = opts->mode == "full" ? PatchMode::FullRecompute : PatchMode::FastPath;
    ro.traces = !opts->clean_only;
    std::vector<FactOutputs> outputs;
    for (const FixtureFact& fact : read_fixture_inputs(opts->in, weights.config.hidden_size))
      outputs.push_back(replay_fact(engine, fact, ro));
    write_replay_outputs(opts->out, outputs,
                         {{"arch", to_string(weights.config.arch)}, {"model_dir", opts->model},
                          {"replayed_from", opts->in}, {"patch_mode", opts->mode}});
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    spdlog::info("replayed {} facts into {} in {:.2f} s ({} layer-token steps)", outputs.size(), opts->out, secs,
                 engine.layer_token_steps());
  });
}

}  // namespace moetrace::cli
