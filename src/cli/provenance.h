#pragma once
// What every results file records about how it was made.
#include <map>
#include <string>

#include "model/checkpoint.h"
#include "results/results_file.h"

namespace moetrace::cli {

// The command line as typed (quoted where needed), set by main().
void set_command_line(int argc, char** argv);
const std::string& command_line();

// `known_sha256`: digests of model files by file name that need not be computed again (the weight
// store's, recorded when it was built from the same bytes); every other model file is hashed here.
Provenance collect_provenance(const std::string& config_path, const std::string& config_text,
                              const Checkpoint& checkpoint, const std::string& backend, int ranks,
                              const std::map<std::string, std::string>& known_sha256 = {});

std::string library_versions_json();

// Appends this process's record (command line, host, working directory, absolute config path, time,
// rank count) to the file's history: the creating run's (`resume` false, which also stores the
// working directory beside the config path) or a --resume's, next to the earlier ones.
void record_run(ResultsFile& f, bool resume, const std::string& config_path, int ranks);

}  // namespace moetrace::cli
