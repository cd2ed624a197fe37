#include "results/run_history.h"

#include <fmt/format.h>

namespace moetrace {
namespace {

std::string history_group() { return std::string(layout::kProvenance) + "/history"; }

// Records are groups named by their index; children() lists them in name order, so read by index.
std::int64_t record_count(h5::File& h) {
  const std::string g = history_group();
  return h.has_attr(g, "records") ? h.attr_int(g, "records") : 0;
}

}  // namespace

void append_run_record(ResultsFile& f, const RunRecord& r) {
  h5::File& h = f.h5();
  const std::int64_t k = h.exists(history_group()) ? record_count(h) : 0;
  const std::string g = fmt::format("{}/{}", history_group(), k);
  f.set_attr(g, "kind", r.kind);
  f.set_attr(g, "command_line", r.command_line);
  f.set_attr(g, "host", r.host);
  f.set_attr(g, "working_directory", r.working_directory);
  f.set_attr(g, "config_path", r.config_path);
  f.set_attr(g, "time_utc", r.time_utc);
  f.set_attr(g, "moetrace_version", r.moetrace_version);
  f.set_attr(g, "git_commit", r.git_commit);
  f.set_attr(g, "ranks", r.ranks);
  f.set_attr(history_group(), "records", k + 1);
}

std::vector<RunRecord> read_run_history(ResultsFile& f) {
  h5::File& h = f.h5();
  std::vector<RunRecord> out;
  if (!h.exists(history_group())) return out;
  const std::int64_t n = record_count(h);
  for (std::int64_t k = 0; k < n; ++k) {
    const std::string g = fmt::format("{}/{}", history_group(), k);
    if (!h.exists(g)) h5::fail_damaged(f.path(), g, "a history record listed in 'records' is missing");
    RunRecord r;
    r.kind = h.attr_string(g, "kind");
    r.command_line = h.attr_string(g, "command_line");
    r.host = h.attr_string(g, "host");
    r.working_directory = h.attr_string(g, "working_directory");
    r.config_path = h.attr_string(g, "config_path");
    r.time_utc = h.attr_string(g, "time_utc");
    r.moetrace_version = h.attr_string(g, "moetrace_version");
    r.git_commit = h.attr_string(g, "git_commit");
    r.ranks = h.attr_int(g, "ranks");
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace moetrace
