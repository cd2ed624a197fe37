#pragma once
// What every results file records about how it was made.
#include <string>

#include "model/checkpoint.h"
#include "results/results_file.h"

namespace moetrace::cli {

// The command line as typed (quoted where needed), set by main().
void set_command_line(int argc, char** argv);
const std::string& command_line();

Provenance collect_provenance(const std::string& config_path, const std::string& config_text,
                              const Checkpoint& checkpoint, const std::string& backend, int ranks);

std::string library_versions_json();

}  // namespace moetrace::cli
