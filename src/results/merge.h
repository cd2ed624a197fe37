#pragma once
// `moetrace merge`: one results file from the files of several runs of one config and model, the
// shards of a staged run (`moetrace run --shard i/n` or `moetrace localize --shard i/n`,
// docs/distribution.md). The output holds the union of the inputs' done rows (every per-case or
// per-pair table, with its done flags) and every other dataset and attribute, and is resumable by
// `moetrace run --resume` (or `moetrace localize --resume`) like any run's file.
//
// Inputs must agree: they are files of one command (/provenance protocol: "localize" for
// `moetrace localize`, none for `moetrace run`), their provenance (config text, model files' SHA-256, backend, moetrace
// version) is identical, a row done in several inputs is bit-identical in each, and every other
// dataset and attribute present in several inputs is identical (dtype, shape and bytes). Anything
// else is an InputError naming the file and the field, dataset and row, or attribute. The output is
// written beside OUT as OUT.tmp and renamed into place when complete; OUT must not exist.
#include <cstddef>
#include <string>
#include <vector>

namespace moetrace {

struct MergeSummary {
  std::size_t row_tables = 0;   // per-case tables (datasets with done flags) in the output
  std::size_t rows_done = 0;    // done rows in the output, over every table
  std::size_t rows_shared = 0;  // rows done in more than one input (checked identical)
  std::string protocol;         // the command that wrote the inputs: "run" or "localize"
};

MergeSummary merge_results(const std::vector<std::string>& inputs, const std::string& out);

}  // namespace moetrace
