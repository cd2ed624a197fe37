// `moetrace run`: the tracing protocol end to end, from a config file to a results file.
#include <filesystem>

#include "backend/backend.h"
#include "cli/commands.h"
#include "cli/provenance.h"
#include "engine/case_tracer.h"
#include "engine/device_model.h"
#include "model/model_weights.h"
#include "protocols/noise_scale.h"
#include "protocols/row_executor.h"
#include "protocols/tokenized_case_builder.h"
#include "protocols/tracing_pipeline.h"
#include "util/error.h"
#include "util/logging.h"
#include "util/stop_signal.h"

namespace moetrace::cli {
namespace {

struct RunOptions {
  std::string config, out;
  bool resume = false;
};

std::string default_output(const std::string& config) {
  return (std::filesystem::path("results") / (std::filesystem::path(config).stem().string() + ".h5")).string();
}

void run(const RunOptions& o) {
  install_stop_handlers();
  const RunConfig config = load_run_config(o.config);
  const std::string out = o.out.empty() ? default_output(o.config) : o.out;
  if (!o.resume && std::filesystem::exists(out))
    fail_input("{} already exists: pass --resume to continue that run, or choose another --out (results are never "
               "overwritten)", out);
  if (auto parent = std::filesystem::path(out).parent_path(); !parent.empty()) std::filesystem::create_directories(parent);

  ModelWeights weights = load_model(config.model_path);
  const ModelConfig& mc = weights.config;
  const auto records = read_counterfact(config.counterfact_path);
  spdlog::info("{} CounterFact records from {}", records.size(), config.counterfact_path.string());
  const TokenizedCaseBuilder builder(config, mc);

  double sigma_base = 0;
  if (config.sigma_rule == SigmaRule::EmbeddingStd) {
    sigma_base = embedding_matrix_std(weights.embed);
  } else {
    std::vector<std::vector<int>> subjects;
    for (const auto& r : records) {
      BuiltCase b = builder.build(r);
      if (b.skip_reason.empty())
        subjects.emplace_back(b.prompt.ids.begin() + b.prompt.subject_begin, b.prompt.ids.begin() + b.prompt.subject_end);
    }
    sigma_base = subject_embedding_std(weights.embed, subjects);
  }
  spdlog::info("noise: sigma = {} x {:.5f} = {:.5f}", config.noise_multiplier, sigma_base,
               config.noise_multiplier * sigma_base);

  auto backend = make_cpu_backend();
  if (config.backend != "cpu")
    fail_input("{}: [model] backend = '{}' is not available in this build (use \"cpu\")", o.config, config.backend);
  DeviceModel model = upload_model(weights, *backend);
  spdlog::info("model {}: {} ({} layers, {} experts, top-{}), {:.1f} MiB of weights on {}", config.model_path.string(),
               to_string(mc.arch), mc.num_layers, mc.num_experts, mc.top_k, backend->weight_bytes() / 1048576.0,
               backend->name());
  Engine engine(model, *backend);
  CaseTracer tracer(engine, config.batch_rows);

  ResultsFile results(out, o.resume ? ResultsFile::Mode::Resume : ResultsFile::Mode::Create);
  if (o.resume) {
    if (results.stored_config_text() != config.source_text)
      fail_input("--resume: the config stored in {} differs from {}; resume with the same config", out, o.config);
    spdlog::info("resuming {}", out);
  } else {
    results.write_provenance(collect_provenance(o.config, config.source_text, *weights.checkpoint, backend->name(), 1));
  }
  // Between cases: save on schedule, and stop cleanly (everything computed so far saved) on a signal.
  LocalRowExecutor executor(results, config.progress_every_s, [&] {
    if (stop_requested()) {
      results.flush();
      throw StopRequested();
    }
    results.flush_if_due(config.checkpoint_every_s);
  });
  TracingPipeline pipeline(config, tracer, builder, sigma_base, results, executor);
  const PipelineSummary s = pipeline.run(records);
  spdlog::info("done: {} cases, layer {}, expert {}; {} layer-token steps. Results: {}  (tables: moetrace report {})",
               s.usable_cases, s.selected_layer, s.selected_expert, engine.layer_token_steps(), out, out);
}

}  // namespace

void register_run_command(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  CLI::App* cmd = app.add_subcommand("run", "Run the tracing protocol end to end: CounterFact + model -> results file");
  cmd->footer("Run the expert-aware causal tracing protocol (docs/PROTOCOL.md) end to end.\n"
      "CONFIG.toml names the model folder, the CounterFact file and every protocol setting (docs/config.md;\n"
      "configs/ has the paper's settings for Qwen3-30B-A3B, Mixtral-8x7B and OLMoE, and configs/demo.toml).\n"
      "Stages: cases (prompts, subject spans, object-token rule, clean and noised passes, filter, split) ->\n"
      "layer sweep (select the best layer on discovery cases) -> expert tracing at that layer -> controls\n"
      "and coalitions -> held-out statistics -> optional heat maps and robustness grids.\n"
      "Progress is logged with rate and ETA. Every per-case row is written as soon as it is computed, so an\n"
      "interrupted run continues with --resume. An existing results file is never overwritten.\n\n"
      "Example:\n  moetrace run configs/demo.toml --out results/demo.h5 && moetrace report results/demo.h5");
  cmd->add_option("CONFIG", o->config, "run configuration (.toml)")->required()->check(CLI::ExistingFile);
  cmd->add_option("--out", o->out, "results file (default: results/<config name>.h5)");
  cmd->add_flag("--resume", o->resume, "continue the run stored in --out: only missing rows are computed");
  cmd->callback([o] { run(*o); });
}

}  // namespace moetrace::cli
