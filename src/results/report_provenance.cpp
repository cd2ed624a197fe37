#include "results/report_provenance.h"

#include <utility>

#include <fmt/format.h>

namespace moetrace {

ReportProvenance read_report_provenance(ResultsFile& f) {
  h5::File& h = f.h5();
  const std::string g = layout::kProvenance;
  ReportProvenance p;
  for (auto [name, out] : {std::pair{"model_path", &p.model_path}, std::pair{"backend", &p.backend},
                           std::pair{"git_commit", &p.git_commit}, std::pair{"moetrace_version", &p.moetrace_version},
                           std::pair{"created_utc", &p.created_utc}, std::pair{"command_line", &p.command_line},
                           std::pair{"config_path", &p.config_path},
                           std::pair{"working_directory", &p.working_directory}})
    if (h.has_attr(g, name)) *out = h.attr_string(g, name);
  p.ranks = h.attr_int(g, "ranks");
  if (p.ranks < 1)
    h5::fail_damaged(f.path(), fmt::format("attribute 'ranks' of '{}'", g), fmt::format("value {} is below 1", p.ranks));
  p.completed = h.has_attr(g, "completed");
  p.history = read_run_history(f);
  return p;
}

}  // namespace moetrace
