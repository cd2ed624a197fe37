// `moetrace run`: the tracing protocol end to end, from a config file to a results file, on one
// process or on an MPI job of N ranks in EP groups of R (`mpirun -np N moetrace run CONFIG --ep R`).
#include <algorithm>
#include <filesystem>
#include <optional>

#include "backend/backend_registry.h"
#include "cli/command_session.h"
#include "cli/command_support.h"
#include "cli/commands.h"
#include "cli/provenance.h"
#include "comm/communicator.h"
#include "comm/errors.h"
#include "comm/expert_parallel_exchange.h"
#include "engine/case_tracer.h"
#include "engine/device_model.h"
#include "model/model_weights.h"
#include "protocols/distributed_row_executor.h"
#include "protocols/noise_scale.h"
#include "protocols/row_executor.h"
#include "protocols/tokenized_case_builder.h"
#include "protocols/tracing_pipeline.h"
#include "results/output_lock.h"
#include "util/error.h"
#include "util/logging.h"
#include "util/stop_signal.h"

namespace moetrace::cli {
namespace {

struct RunOptions {
  std::string config, out;
  bool resume = false;
  int ep = 1;
  std::string shard;      // "i/n", empty: every case
  std::string stop_file;  // --stop-file, empty: none
  std::string weight_store;  // --weight-store, empty: the config's
};

// End-of-run statistics: engine calls and layer-token steps (one token through one layer), in all and
// per usable case, and how often a case was prepared (docs/engine.md, "Engine work per case").
// On several ranks, also the sum over all of them (collective; `moetrace plan` counts one group's
// conditions, and every chunk's conditions run on exactly one group).
void report_engine_work(const CaseTracer& tracer, const PipelineSummary& s, Communicator& world, int ep) {
  const TracerWork& w = tracer.work();
  if (world.size() > 1) {
    std::int64_t all[3] = {static_cast<std::int64_t>(w.engine_calls), static_cast<std::int64_t>(w.prepare_steps),
                           static_cast<std::int64_t>(w.condition_steps)};
    world.allreduce_sum(all, 3);
    spdlog::info("engine work on all {} ranks ({} groups of {}; every rank of a group runs its group's calls): {} engine "
                 "calls, {} layer-token steps ({} preparing, {} in patched conditions)",
                 world.size(), world.size() / ep, ep, all[0], all[1] + all[2], all[1], all[2]);
  }
  const double n = std::max(1, s.usable_cases);
  const std::uint64_t steps = w.prepare_steps + w.condition_steps;
  spdlog::info("engine work on this rank: {} engine calls, {} layer-token steps ({} preparing {} case runs, {} in "
               "patched conditions); {} preparations reused", w.engine_calls, steps, w.prepare_steps,
               s.preparations.prepared, w.condition_steps, s.preparations.reused);
  spdlog::info("per usable case: {:.1f} engine calls, {:.0f} layer-token steps ({:.0f} preparing, {:.0f} in "
               "conditions, each condition from its first patched layer and position: the protocol's minimum); "
               "{:.2f} preparations per case (minimum: 1 per noise setting)",
               w.engine_calls / n, steps / n, w.prepare_steps / n, w.condition_steps / n, s.preparations.prepared / n);
}

void run(const RunOptions& o, std::optional<CaseShard> shard, Communicator& world) {
  const bool writer = start_ranks(world, o.ep, o.stop_file);
  const RunConfig config = on_every_rank(world, [&] {
    RunConfig c = load_run_config(o.config);
    check_backend_name(c.backend, c.source_path.string() + ": [model] backend");
    check_run_inputs(c);
    return c;
  });
  std::optional<OutputLock> lock;  // held by the writing rank until the run ends
  const std::string out = prepare_output_on_writer(world, writer, o.out, o.config, o.resume, lock);

  CommandSession session(world, {config.model_path, config.backend,
                                 o.weight_store.empty() ? config.weight_store : std::filesystem::path(o.weight_store), o.ep});
  const ModelConfig& mc = session.model_config();
  const auto records = on_every_rank(world, [&] { return read_counterfact(config.counterfact_path); });
  spdlog::info("{} CounterFact records from {}", records.size(), config.counterfact_path.string());
  const auto builder = on_every_rank(world, [&] { return std::make_shared<TokenizedCaseBuilder>(config, mc); });
  const double sigma_base = on_every_rank(world, [&] {
    return noise_sigma_base(config, session.backend(), session.engine().model(), *builder, records);
  });
  spdlog::info("noise: sigma = {} x {:.5f} = {:.5f}", config.noise_multiplier, sigma_base,
               config.noise_multiplier * sigma_base);
  CaseTracer tracer(session.engine(), config.batch_rows);

  // Only the writing rank has the real file; the others get every stage's table from it and keep a
  // small in-memory file for the pipeline's summaries (never the per-case rows).
  std::unique_ptr<ResultsFile> results =
      open_results_file(world, out, o.resume, o.config, config.source_text,
                        [&] { return session.provenance(o.config, config.source_text); },
                        [&](ResultsFile& f) { record_shard(f, shard); });
  std::unique_ptr<RowExecutor> executor =
      make_row_executor(world, session.group(), session.leaders(), *results, config.chunk_tokens,
                        config.progress_every_s, config.checkpoint_every_s);
  TracingPipeline pipeline(config, tracer, *builder, sigma_base, *results, *executor);
  if (shard) pipeline.set_shard(*shard);
  const PipelineSummary s = pipeline.run(records);
  if (!s.stopped_before.empty())
    spdlog::info("shard {}/{}: its cases are done; stopped before {}, which needs every shard's rows. Results: {}  "
                 "(next: moetrace merge --out MERGED.h5 <every shard's file>, then moetrace run --resume on the "
                 "merged file, or on copies of it with --shard)", shard->index, shard->count, s.stopped_before, out);
  else
    spdlog::info("done: {} cases, layer {}, expert {}. Results: {}  (tables: moetrace report {})", s.usable_cases,
                 s.selected_layer, s.selected_expert, out, out);
  report_engine_work(tracer, s, world, o.ep);
  if (const ExpertParallelExchange* exchange = session.exchange()) {
    const double steps = static_cast<double>(session.engine().layer_token_steps());
    spdlog::info("expert exchange on rank 0: {} combine calls (MoE layer steps), {} bytes sent, {} bytes received "
                 "({} / {} of them slot rows); {:.1f} bytes sent and {:.1f} bytes received per layer-token step",
                 exchange->calls(), exchange->bytes_sent(), exchange->bytes_received(), exchange->payload_bytes_sent(),
                 exchange->payload_bytes_received(), steps > 0 ? exchange->bytes_sent() / steps : 0.0,
                 steps > 0 ? exchange->bytes_received() / steps : 0.0);
  }
}

}  // namespace

void register_run_command(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  CLI::App* cmd = app.add_subcommand("run", "Run the tracing protocol end to end: CounterFact + model -> results file");
  cmd->footer(
      "Run the expert-aware causal tracing protocol (docs/PROTOCOL.md) end to end.\n"
      "CONFIG.toml names the model folder, the CounterFact file and every protocol setting (docs/config.md;\n"
      "configs/ has the paper's settings for Qwen3-30B-A3B, Mixtral-8x7B and OLMoE, and configs/demo.toml).\n"
      "Stages: cases (prompts, subject spans, object-token rule, clean and noised passes, filter, split) ->\n"
      "layer sweep (select the best layer on discovery cases) -> expert tracing at that layer -> controls\n"
      "and coalitions -> held-out statistics -> optional heat maps and robustness grids.\n"
      "Progress is logged with rate and ETA. Every per-case row is written as soon as it is computed, so an\n"
      "interrupted run continues with --resume. An existing results file is never overwritten.\n\n"
      "On a cluster: `mpirun -np N moetrace run CONFIG --ep R` splits the N ranks into N/R expert-parallel\n"
      "groups of R ranks (R divides N); rank 0 hands out cases, gathers rows and alone writes the file.\n"
      "Results do not depend on N or R (docs/distribution.md).\n\n"
      "Shards (job arrays, slurm/chain.sh): `--shard i/n` computes the per-case rows of cases i, i+n, i+2n, ...\n"
      "only (the case scan in full), and ends with status 0 before the first step that needs every case:\n"
      "the layer selection, the expert selection, and always before the statistics. `moetrace merge` joins\n"
      "the shards' files; `--resume --shard i/n` on a copy of the merged file continues with the next\n"
      "per-case stage; a final `--resume` without --shard on the merged file finishes the run, bit-identical\n"
      "to one uninterrupted run (docs/distribution.md).\n\n"
      "Weights: with [model] weight_store = \"DIR\" (or --weight-store DIR) the first run packs the model into\n"
      "a store under DIR and every later run, rank and job maps it read-only (seconds instead of minutes; one\n"
      "copy per node; models larger than memory run): docs/weights.md, `moetrace store --help`.\n\n"
      "Exit codes: 0 done; 2 bad input (the message says what and where), a damaged results file, or --out\n"
      "locked by another run (<out>.lock names its host and PID); 75 stopped by SIGTERM/SIGUSR1/SIGINT or\n"
      "--stop-file after saving (rerun with --resume). A stop that arrives after the last result is saved\n"
      "ends the run as done (0).\n\n"
      "Examples:\n"
      "  moetrace run configs/demo.toml --out results/demo.h5 && moetrace report results/demo.h5\n"
      "  mpirun -np 8 moetrace run configs/mixtral-8x7b.toml --ep 2 --out results/mixtral.h5 --resume\n"
      "  moetrace run configs/demo.toml --shard 1/4 --out results/demo.shard1.h5\n"
      "  moetrace run configs/qwen3-30b-a3b.toml --weight-store /local/scratch/moetrace-store");
  // A missing or unreadable CONFIG is reported by load_run_config (exit 2), not by CLI11's validator.
  cmd->add_option("CONFIG", o->config, "run configuration (.toml)")->required();
  cmd->add_option("--out", o->out, "results file (default: results/<config name>.h5)");
  cmd->add_flag("--resume", o->resume, "continue the run stored in --out: only missing rows are computed");
  cmd->add_option("--ep", o->ep, "expert-parallel group size R under mpirun (R ranks share every layer's experts)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--stop-file", o->stop_file, kStopFileHelp);
  cmd->add_option("--weight-store", o->weight_store, kWeightStoreHelp);
  cmd->add_option("--shard", o->shard,
                  "i/n: only cases i, i+n, ... up to the first step that needs every case (0 <= i < n)");
  cmd->callback([o] {
    const std::optional<CaseShard> shard = parse_shard(o->shard);
    auto world = make_world_communicator();
    // One rank's unexpected failure aborts the job with its message instead of hanging the others.
    run_or_abort(*world, [&] { run(*o, shard, *world); });
  });
}

}  // namespace moetrace::cli
