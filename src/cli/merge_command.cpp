// `moetrace merge --out OUT IN...`: the files of the shards of one run (`moetrace run --shard i/n`
// or `moetrace localize --shard i/n`) joined into one results file that `moetrace run --resume`
// (or `moetrace localize --resume`) continues (src/results/merge.h).
#include <memory>
#include <optional>

#include "cli/commands.h"
#include "results/merge.h"
#include "results/output_lock.h"
#include "util/logging.h"

namespace moetrace::cli {
namespace {

struct MergeOptions {
  std::string out;
  std::vector<std::string> inputs;
};

void merge(const MergeOptions& o) {
  const OutputLock lock(o.out);  // a second merge or run on OUT fails, naming the holder
  const MergeSummary s = merge_results(o.inputs, o.out);
  spdlog::info("merged {} files into {}: {} per-{} tables, {} done rows ({} done in more than one file, all "
               "identical). Continue with: moetrace {} CONFIG --resume --out {} [--shard i/n on a copy]",
               o.inputs.size(), o.out, s.row_tables, s.protocol == "localize" ? "pair" : "case", s.rows_done,
               s.rows_shared, s.protocol, o.out);
}

}  // namespace

void register_merge_command(CLI::App& app) {
  auto o = std::make_shared<MergeOptions>();
  CLI::App* cmd = app.add_subcommand(
      "merge", "Join the results files of a run's shards (run or localize --shard i/n) into one");
  cmd->footer(
      "Writes --out with the union of the inputs' done rows (every per-case or per-pair table and its done\n"
      "flags) and their other datasets and attributes; `moetrace run CONFIG --resume --out OUT` (for the\n"
      "files of `moetrace localize --shard i/n`: `moetrace localize CONFIG --resume --out OUT`) continues\n"
      "it: with --shard i/n on copies of it for the next per-case (per-pair) stage, without --shard to\n"
      "finish the run. The result of shards, merges and the final run is bit-identical to one\n"
      "uninterrupted run (docs/distribution.md, slurm/chain.sh).\n\n"
      "The inputs must be files of one run: of one command (run or localize: /provenance protocol), with\n"
      "the same config text, model files (SHA-256), backend and moetrace version in /provenance; a row done\n"
      "in several inputs bit-identical in each; every other dataset and attribute identical where present.\n"
      "--out must not exist (results are never overwritten); it is written as <out>.tmp and renamed when\n"
      "complete. The merged file's /provenance is the first input's, plus `merged_from` (each input and\n"
      "its shard).\n\n"
      "Exit codes: 0 done; 2 bad input: an unreadable or damaged input, inputs of different runs or commands\n"
      "(the message names the file and the provenance field), conflicting rows (file, table and row), an\n"
      "existing --out.\n\n"
      "Example:\n"
      "  moetrace merge --out results/demo.h5 results/demo.shard0.h5 results/demo.shard1.h5");
  cmd->add_option("--out", o->out, "the merged results file (must not exist)")->required();
  cmd->add_option("INPUT", o->inputs, "results files of the shards (two or more)")->required();
  cmd->callback([o] { merge(*o); });
}

}  // namespace moetrace::cli
