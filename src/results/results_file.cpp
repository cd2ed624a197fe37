#include "results/results_file.h"

#include <cmath>
#include <filesystem>

#include "util/error.h"

namespace moetrace {
namespace {

h5::File::Mode file_mode(const std::string& path, ResultsFile::Mode mode) {
  ResultsFile::check_can_open(path, mode);
  switch (mode) {
    case ResultsFile::Mode::Create: return h5::File::Mode::SnapshotCreate;
    case ResultsFile::Mode::Resume: return h5::File::Mode::SnapshotResume;
    case ResultsFile::Mode::Read: return h5::File::Mode::ReadOnly;
    case ResultsFile::Mode::Scratch: return h5::File::Mode::Scratch;
  }
  return h5::File::Mode::ReadOnly;
}

}  // namespace

void ResultsFile::check_can_open(const std::string& path, Mode mode) {
  if (mode == Mode::Create && std::filesystem::exists(path))
    fail_input("{} already exists: pass --resume to continue that run, or choose another --out "
               "(results are never overwritten)", path);
  if (mode == Mode::Resume && !std::filesystem::exists(path)) fail_input("--resume: {} does not exist", path);
}

ResultsFile::ResultsFile(const std::string& path, Mode mode) : file_(path, file_mode(path, mode)) {
  if ((mode == Mode::Resume || mode == Mode::Read) && !file_.exists(layout::kProvenance))
    fail_input("{} is not a moetrace results file (no {} group)", path, layout::kProvenance);
  // Every results file has these; without them the provenance group is damaged, not merely short.
  if (mode == Mode::Resume || mode == Mode::Read)
    for (const char* a : {"config_text", "moetrace_version", "ranks"})
      if (!file_.has_attr(layout::kProvenance, a))
        h5::fail_damaged(path, std::string("the ") + layout::kProvenance + " group",
                         fmt::format("its attribute '{}' is missing", a));
}

void ResultsFile::write_provenance(const Provenance& p) {
  file_.create_groups(layout::kProvenance);
  const std::string g = layout::kProvenance;
  for (auto [k, v] : {std::pair{"moetrace_version", &p.moetrace_version}, std::pair{"git_commit", &p.git_commit},
                      std::pair{"command_line", &p.command_line}, std::pair{"config_path", &p.config_path},
                      std::pair{"config_text", &p.config_text}, std::pair{"created_utc", &p.created_utc},
                      std::pair{"model_path", &p.model_path}, std::pair{"model_files_sha256", &p.model_files_sha256_json},
                      std::pair{"library_versions", &p.library_versions_json}, std::pair{"backend", &p.backend}})
    file_.set_attr(g, k, *v);
  file_.set_attr(g, "ranks", static_cast<std::int64_t>(p.ranks));
}

std::string ResultsFile::stored_config_text() const { return file_.attr_string(layout::kProvenance, "config_text"); }

void ResultsFile::write_cases(const std::string& g, const CaseTable& t) {
  const std::size_t n = t.case_id.size();
  file_.create_groups(g);
  file_.write_int64(g + "/case_id", {n}, t.case_id.data());
  file_.write_strings(g + "/prompt", t.prompt);
  file_.write_strings(g + "/subject", t.subject);
  file_.write_strings(g + "/true_object", t.true_object);
  file_.write_strings(g + "/foil_object", t.foil_object);
  file_.write_strings(g + "/relation_id", t.relation);
  std::size_t tmax = 0;
  for (const auto& ids : t.token_ids) tmax = std::max(tmax, ids.size());
  std::vector<std::int32_t> padded(n * tmax, -1), num_tokens(n);
  for (std::size_t i = 0; i < n; ++i) {
    std::copy(t.token_ids[i].begin(), t.token_ids[i].end(), padded.begin() + i * tmax);
    num_tokens[i] = static_cast<std::int32_t>(t.token_ids[i].size());
  }
  file_.write_int(g + "/token_ids", {n, tmax}, padded.data(), {true, {}});
  file_.write_int(g + "/num_tokens", {n}, num_tokens.data());
  std::vector<std::int32_t> span(2 * n);
  for (std::size_t i = 0; i < n; ++i) {
    span[2 * i] = t.subject_begin[i];
    span[2 * i + 1] = t.subject_end[i];
  }
  file_.write_int(g + "/subject_span", {n, 2}, span.data());
  file_.write_int(g + "/true_id", {n}, t.true_id.data());
  file_.write_int(g + "/foil_id", {n}, t.foil_id.data());
  file_.write_int(g + "/split", {n}, t.split.data());
  file_.write_double(g + "/d_clean", {n}, t.d_clean.data());
  file_.write_double(g + "/d_noised", {n}, t.d_noised.data());
  file_.set_attr(g + "/split", "meaning", std::string("0 = discovery, 1 = validation"));
}

CaseTable ResultsFile::read_cases(const std::string& g) const {
  CaseTable t;
  auto ids = file_.read_int(g + "/case_id");
  t.case_id.assign(ids.data.begin(), ids.data.end());
  t.prompt = file_.read_strings(g + "/prompt");
  t.subject = file_.read_strings(g + "/subject");
  t.true_object = file_.read_strings(g + "/true_object");
  t.foil_object = file_.read_strings(g + "/foil_object");
  auto split = file_.read_int(g + "/split");
  t.split.assign(split.data.begin(), split.data.end());
  t.d_clean = file_.read_double(g + "/d_clean").data;
  t.d_noised = file_.read_double(g + "/d_noised").data;
  return t;
}

void ResultsFile::write_skips(const std::string& g, const std::vector<std::int64_t>& ids,
                              const std::vector<std::string>& reasons) {
  file_.create_groups(g);
  file_.write_int64(g + "/case_id", {ids.size()}, ids.data());
  file_.write_strings(g + "/reason", reasons);
}

std::uint64_t estimate_results_bytes(const std::vector<TableShape>& tables, std::uint64_t string_bytes,
                                     std::uint64_t summary_records, double compressed) {
  // Fitted on the demo's file (426 KB, 18 tables, 30 robustness rows), the 12-layer benchmark's
  // (131 KB, 7 tables, none) and the localize demo's (2.26 MB, 71 tables): docs/distribution.md, "Planning a study: predicted against measured".
  constexpr std::uint64_t kPerDataset = 5 << 10;     // object header, chunk index, attributes, checksums
  constexpr std::uint64_t kFixed = 39 << 10;         // provenance (config, environment), statistics, metadata
  constexpr std::uint64_t kPerRecord = 2662;         // a robustness row's summary record
  double bytes = static_cast<double>(kFixed + string_bytes + summary_records * kPerRecord);
  for (const TableShape& t : tables)
    bytes += 2 * kPerDataset + compressed * static_cast<double>(t.rows * (t.cols * sizeof(double) + sizeof(std::int32_t)));
  return static_cast<std::uint64_t>(bytes);
}

void ResultsFile::ensure_matrix(const std::string& name, const std::vector<std::size_t>& shape) {
  if (file_.exists(name)) {
    if (file_.shape(name) != shape)
      fail_input("{}: {} exists with another shape: the run being resumed differs from this one", path(), name);
    return;
  }
  h5::WriteOptions opts{true, {}};
  opts.chunk.assign(shape.begin(), shape.end());
  opts.chunk[0] = std::min<std::size_t>(shape[0], 64);
  file_.create_dataset(name, shape, false, NAN, opts);
  file_.create_dataset(name + "_done", {shape[0]}, true, 0, {false, {}});
}

void ResultsFile::write_row(const std::string& name, std::size_t row, const std::vector<double>& values) {
  file_.write_rows_double(name, row, 1, values.data());
  const std::int32_t one = 1;
  file_.write_rows_int(name + "_done", row, 1, &one);
}

std::vector<bool> ResultsFile::done_rows(const std::string& name) const {
  auto d = file_.read_int(name + "_done");
  std::vector<bool> out;
  for (auto v : d.data) out.push_back(v != 0);
  return out;
}

h5::Array<double> ResultsFile::read_matrix(const std::string& name) const { return file_.read_double(name); }

void ResultsFile::write_vector(const std::string& name, const std::vector<double>& v) {
  file_.write_double(name, {v.size()}, v.data());
}
void ResultsFile::write_ints(const std::string& name, const std::vector<int>& v) {
  std::vector<std::int32_t> w(v.begin(), v.end());
  file_.write_int(name, {w.size()}, w.data());
}
void ResultsFile::write_strings(const std::string& name, const std::vector<std::string>& v) { file_.write_strings(name, v); }

SummaryRecord summary_or_nan(const std::vector<SummaryRecord>& records, const std::string& name) {
  for (const SummaryRecord& s : records)
    if (s.name == name) return s;
  SummaryRecord r;
  r.name = name;
  r.mean = r.ci_low = r.ci_high = r.frac_positive = r.p_value = NAN;
  return r;
}

void ResultsFile::complete() {
  set_attr(layout::kProvenance, layout::kCompletedAttr, static_cast<std::int64_t>(1));
  flush();
}
void ResultsFile::set_protocol(const std::string& protocol) { set_attr(layout::kProvenance, layout::kProtocolAttr, protocol); }
std::string ResultsFile::protocol() const {
  return file_.has_attr(layout::kProvenance, layout::kProtocolAttr) ? file_.attr_string(layout::kProvenance, layout::kProtocolAttr)
                                                                    : "run";
}
void ResultsFile::set_shard(const std::string& shard) { set_attr(layout::kProvenance, layout::kShardAttr, shard); }
std::optional<std::string> ResultsFile::shard() const {
  if (!file_.has_attr(layout::kProvenance, layout::kShardAttr)) return std::nullopt;
  return file_.attr_string(layout::kProvenance, layout::kShardAttr);
}
void ResultsFile::set_working_directory(const std::string& directory) {
  set_attr(layout::kProvenance, layout::kWorkingDirectoryAttr, directory);
}

void ResultsFile::write_summary(const std::string& group, const SummaryRecord& s) {
  const std::string g = group + "/" + s.name;
  file_.create_groups(g);
  file_.set_attr(g, "n", static_cast<std::int64_t>(s.n));
  file_.set_attr(g, "mean", s.mean);
  file_.set_attr(g, "ci_low", s.ci_low);
  file_.set_attr(g, "ci_high", s.ci_high);
  file_.set_attr(g, "frac_positive", s.frac_positive);
  file_.set_attr(g, "p_sign_flip", s.p_value);
}

std::vector<SummaryRecord> ResultsFile::read_summaries(const std::string& group) const {
  std::vector<SummaryRecord> out;
  if (!file_.exists(group)) return out;
  for (const std::string& name : file_.children(group)) {
    const std::string g = group + "/" + name;
    if (!file_.has_attr(g, "mean")) continue;
    SummaryRecord s;
    s.name = name;
    s.n = static_cast<int>(file_.attr_int(g, "n"));
    s.mean = file_.attr_double(g, "mean");
    s.ci_low = file_.attr_double(g, "ci_low");
    s.ci_high = file_.attr_double(g, "ci_high");
    s.frac_positive = file_.attr_double(g, "frac_positive");
    s.p_value = file_.attr_double(g, "p_sign_flip");
    out.push_back(s);
  }
  return out;
}

void ResultsFile::flush() {
  file_.flush();
  last_flush_ = std::chrono::steady_clock::now();
}

void ResultsFile::checkpoint() {
  file_.checkpoint();
  last_flush_ = std::chrono::steady_clock::now();
}

void ResultsFile::flush_if_due(double interval_s) {
  if (std::chrono::duration<double>(std::chrono::steady_clock::now() - last_flush_).count() >= interval_s) checkpoint();
}

void ResultsFile::set_attr(const std::string& o, const std::string& n, double v) { file_.create_groups(o); file_.set_attr(o, n, v); }
void ResultsFile::set_attr(const std::string& o, const std::string& n, std::int64_t v) { file_.create_groups(o); file_.set_attr(o, n, v); }
void ResultsFile::set_attr(const std::string& o, const std::string& n, const std::string& v) { file_.create_groups(o); file_.set_attr(o, n, v); }

}  // namespace moetrace
