// `moetrace localize`: router-contrast localisation end to end (docs/localize.md), from a config
// file to a results file, on one process or on an MPI job of N ranks in EP groups of R
// (`mpirun -np N moetrace localize CONFIG --ep R`).
#include <memory>
#include <optional>

#include "backend/backend_registry.h"
#include "cli/command_session.h"
#include "cli/command_support.h"
#include "cli/commands.h"
#include "cli/provenance.h"
#include "comm/communicator.h"
#include "comm/errors.h"
#include "comm/expert_parallel_exchange.h"
#include "engine/device_model.h"
#include "localize/localize_data.h"
#include "model/model_weights.h"
#include "protocols/localize_config.h"
#include "protocols/localize_inputs.h"
#include "protocols/localize_pipeline.h"
#include "results/output_lock.h"
#include "util/error.h"
#include "util/logging.h"
#include "util/stop_signal.h"

namespace moetrace::cli {
namespace {

struct LocalizeCommandOptions {
  std::string config, out;
  bool resume = false;
  int ep = 1;
  std::string shard;      // "i/n", empty: every pair
  std::string stop_file;  // --stop-file, empty: none
  std::string weight_store;  // --weight-store, empty: the config's
};

// The engine work this rank ran, per stage; `moetrace plan` predicts the same counts
// (protocols/localize_work_plan.h, docs/localize.md "Engine work").
void report_engine_work(const std::vector<localize::LocalizeStageWork>& work) {
  std::uint64_t calls = 0, steps = 0;
  std::string stages;
  for (const localize::LocalizeStageWork& w : work) {
    calls += w.engine_calls;
    steps += w.steps;
    stages += fmt::format("{}{}: {} calls, {} steps", stages.empty() ? "" : "; ", w.stage, w.engine_calls, w.steps);
  }
  spdlog::info("engine work on this rank: {} engine calls, {} layer-token steps ({})", calls, steps,
               stages.empty() ? "nothing computed" : stages);
}

void run(const LocalizeCommandOptions& o, std::optional<CaseShard> shard, Communicator& world) {
  const bool writer = start_ranks(world, o.ep, o.stop_file);

  LocalizeConfig config = on_every_rank(world, [&] {
    LocalizeConfig c = load_localize_config(o.config);
    check_backend_name(c.backend, c.source_path.string() + ": [model] backend");
    check_localize_inputs(c);
    return c;
  });
  std::optional<OutputLock> lock;  // held by the writing rank until the run ends
  const std::string out = prepare_output_on_writer(world, writer, o.out, o.config, o.resume, lock);

  auto questions = on_every_rank(world, [&] { return read_localize_questions(config, config.questions_path, "questions"); });
  spdlog::info("{} questions in {} languages from {} ({})", questions.questions.size(), questions.languages.size(),
               config.questions_path.string(), questions.skipped.summary());
  std::optional<localize::QuestionSet> unrelated;
  if (!config.unrelated_path.empty())
    unrelated = on_every_rank(world, [&] { return read_localize_questions(config, config.unrelated_path, "unrelated"); });
  CommandSession session(world, {config.model_path, config.backend,
                                 o.weight_store.empty() ? config.weight_store : std::filesystem::path(o.weight_store), o.ep});
  const ModelConfig& mc = session.model_config();
  const auto tokenizer = on_every_rank(world, [&] { return std::make_shared<Tokenizer>(Tokenizer::from_path(config.tokenizer_path)); });
  // Checks that need the model and tokenizer, before any stage runs (docs/config.md).
  on_every_rank(world, [&] {
    fit_localize_config_to_model(config, mc, *tokenizer);
    screen_localize_questions(config, mc, *tokenizer, questions, config.questions_path);
    if (unrelated) screen_localize_questions(config, mc, *tokenizer, *unrelated, config.unrelated_path);
    return true;
  });

  std::unique_ptr<ResultsFile> results = open_results_file(
      world, out, o.resume, o.config, config.source_text,
      [&] { return session.provenance(o.config, config.source_text); },
      [&](ResultsFile& f) {
        f.set_protocol("localize");
        record_shard(f, shard);
      });
  std::unique_ptr<RowExecutor> executor = make_row_executor(world, session.group(), session.leaders(), *results, config.chunk_tokens,
                                                            config.progress_every_s, config.checkpoint_every_s);
  localize::LocalizeOptions options = localize_options(config, mc);
  if (unrelated) options.unrelated = &*unrelated;
  localize::LocalizePipeline pipeline(session.engine(), *tokenizer, questions, options, *results, *executor);
  pipeline.leave_asked_out();
  if (shard) pipeline.set_shard(*shard);
  const localize::LocalizationResult r = pipeline.run();
  report_engine_work(pipeline.work());
  if (!r.stopped_before.empty()) {
    spdlog::info("shard {}/{}: its pairs are done; stopped before {}, which needs every shard's rows. Results: {}  "
                 "(next: moetrace merge --out MERGED.h5 <every shard's file>, then moetrace localize --resume on the "
                 "merged file, or on copies of it with --shard)", shard->index, shard->count, r.stopped_before, out);
    return;
  }
  spdlog::info("done: {} pairs asked, {} validation pairs; the chosen {} experts turn {:.3f} of correct validation pairs "
               "wrong [{:.3f}, {:.3f}], random sets {:.3f}, popular {:.3f}. Results: {}  (tables: moetrace report {})",
               questions.questions.size() * questions.languages.size(), r.validation_pairs.size(), r.chosen.size(), r.share_turned_wrong, r.share_ci.low,
               r.share_ci.high, r.random_share_turned_wrong, r.popular_share_turned_wrong, out, out);
}

}  // namespace

void register_localize_command(CLI::App& app) {
  auto o = std::make_shared<LocalizeCommandOptions>();
  CLI::App* cmd = app.add_subcommand(
      "localize", "Router-contrast localisation end to end: multilingual questions + model -> results file");
  cmd->footer(
      "Router-contrast knowledge localisation (docs/localize.md): every (question, language) pair is asked\n"
      "(greedy decoding), bucketed by correctness, and the router statistics of the two buckets are contrasted\n"
      "on the discovery half of the questions; the top experts are deactivated and the validation pairs\n"
      "re-asked, against random layer-matched and popular-expert control sets, along an effect-vs-N curve,\n"
      "and on unrelated questions. CONFIG.toml: docs/config.md (\"moetrace localize\").\n"
      "Every per-pair row is written as soon as it is computed, so an interrupted run continues with --resume\n"
      "(bit-identical to an uninterrupted run). An existing results file is never overwritten.\n\n"
      "On a cluster: `mpirun -np N moetrace localize CONFIG --ep R` (R divides N); rank 0 hands out pairs,\n"
      "gathers rows, alone writes the file and alone holds the asked pairs' routing statistics (it computes the\n"
      "contrast and shares the chosen and control sets). Results do not depend on N, R or [run] chunk_tokens.\n\n"
      "Shards (job arrays, slurm/README.md): `--shard i/n` computes the per-pair rows of pairs i, i+n, i+2n, ...\n"
      "only (pairs in question-major order) and ends with status 0 before the first step that needs every\n"
      "pair: the contrast while the asked table lacks other shards' rows, and always before the summaries\n"
      "(after the shard's rows of every condition table). `moetrace merge` joins the shards' files;\n"
      "`--resume --shard i/n` on a copy of the merged file computes the shard's condition rows; a final\n"
      "`--resume` without --shard on the merged file finishes the run, bit-identical to one uninterrupted run\n"
      "(docs/localize.md, docs/distribution.md).\n\n"
      "Exit codes: 0 done; 2 bad input (the message names the file and key or record), a damaged results\n"
      "file, or --out locked by another run; 75 stopped by SIGTERM/SIGUSR1/SIGINT or --stop-file after\n"
      "saving (rerun with --resume); a stop after the last result is saved ends the run as done (0).\n\n"
      "Weights: [model] weight_store = \"DIR\" or --weight-store DIR maps a packed store instead of packing\n"
      "the checkpoint on every start (docs/weights.md).\n\n"
      "Example:\n"
      "  moetrace localize configs/demo_localize.toml --out results/demo_localize.h5\n"
      "  moetrace localize configs/demo_localize.toml --shard 1/3 --out results/demo_localize.shard1.h5");
  cmd->add_option("CONFIG", o->config, "localize configuration (.toml)")->required();
  cmd->add_option("--out", o->out, "results file (default: results/<config name>.h5)");
  cmd->add_flag("--resume", o->resume, "continue the run stored in --out: only missing rows are computed");
  cmd->add_option("--ep", o->ep, "expert-parallel group size R under mpirun (R ranks share every layer's experts)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--shard", o->shard,
                  "i/n: only pairs i, i+n, ... up to the first step that needs every pair (0 <= i < n)");
  cmd->add_option("--stop-file", o->stop_file, kStopFileHelp);
  cmd->add_option("--weight-store", o->weight_store, kWeightStoreHelp);
  cmd->callback([o] {
    const std::optional<CaseShard> shard = parse_shard(o->shard);
    auto world = make_world_communicator();
    run_or_abort(*world, [&] { run(*o, shard, *world); });
  });
}

}  // namespace moetrace::cli
