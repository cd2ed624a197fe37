#include "protocols/report_provenance_format.h"

#include <fmt/format.h>
#include <fmt/ostream.h>

namespace moetrace {

void print_report_provenance(const ReportProvenance& p, std::ostream& out) {
  fmt::print(out, "  model {}  (backend {}, {} rank(s), commit {})\n", p.model_path, p.backend, p.ranks, p.git_commit);
  if (!p.config_path.empty())
    fmt::print(out, "  config {}{}\n", p.config_path,
               p.working_directory.empty() ? "" : fmt::format("  (run in {})", p.working_directory));
  for (const RunRecord& r : p.history)
    fmt::print(out, "  {:<6} {}  on {} with {} rank(s): {}\n", r.kind, r.time_utc, r.host, r.ranks, r.command_line);
  if (!p.completed) fmt::print(out, "  NOTE: the run has not completed; tables show what is there\n");
}

nlohmann::ordered_json report_provenance_json(const ReportProvenance& p) {
  using json = nlohmann::ordered_json;
  json history = json::array();
  for (const RunRecord& r : p.history)
    history.push_back({{"kind", r.kind}, {"command_line", r.command_line}, {"host", r.host},
                       {"working_directory", r.working_directory}, {"config_path", r.config_path},
                       {"time_utc", r.time_utc}, {"ranks", r.ranks}, {"moetrace_version", r.moetrace_version},
                       {"git_commit", r.git_commit}});
  return {{"model_path", p.model_path}, {"backend", p.backend}, {"ranks", p.ranks},
          {"git_commit", p.git_commit}, {"moetrace_version", p.moetrace_version},
          {"created_utc", p.created_utc}, {"command_line", p.command_line},
          {"config_path", p.config_path}, {"working_directory", p.working_directory},
          {"completed", p.completed}, {"history", history}};
}

}  // namespace moetrace
