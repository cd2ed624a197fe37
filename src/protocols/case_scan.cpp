#include "protocols/case_scan.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "protocols/selection.h"
#include "results/tracing_results.h"
#include "util/error.h"
#include "util/logging.h"
#include "util/progress.h"

namespace moetrace {

bool passes_filter(FilterKind filter, double d_clean, double d_noised) {
  const double min_clean = filter == FilterKind::Strict ? 1.0 : 0.5;
  const double min_drop = filter == FilterKind::Strict ? 0.5 : 0.25;
  return d_clean >= min_clean && d_clean - d_noised >= min_drop;
}

CaseScanner::CaseScanner(const RunConfig& config, const CaseBuilder& builder, PreparedCases& prepared,
                         double sigma_base)
    : config_(config), builder_(builder), prepared_(prepared), sigma_base_(sigma_base) {}

ScanOrder scan_order(const RunConfig& config, const std::vector<CounterFactRecord>& records) {
  ScanOrder o;
  o.explicit_ids = !config.case_ids_path.empty();
  if (!o.explicit_ids) {
    constexpr std::uint64_t kShuffleTag = 0x73687566666c65ULL;  // "shuffle"
    o.order = seeded_permutation(static_cast<int>(records.size()), config.shuffle_seed, kShuffleTag);
    if (config.max_records > 0 && static_cast<int>(o.order.size()) > config.max_records) o.order.resize(config.max_records);
    return o;
  }
  std::unordered_map<std::int64_t, int> by_id;
  for (int i = 0; i < static_cast<int>(records.size()); ++i) by_id[records[i].case_id] = i;
  const CaseIdSplit ids = read_case_id_split(config.case_ids_path, config.case_ids_key);
  std::vector<std::int64_t> missing;
  for (auto [list, split] : {std::pair{&ids.discovery, Split::Discovery}, std::pair{&ids.validation, Split::Validation}})
    for (std::int64_t id : *list) {
      auto it = by_id.find(id);
      if (it == by_id.end()) {
        missing.push_back(id);
        continue;
      }
      o.order.push_back(it->second);
      o.fixed_split.push_back(split);
    }
  if (!missing.empty())
    fail_input("{}: {} listed case ids are not in {} (first: {})", config.case_ids_path.string(), missing.size(),
               config.counterfact_path.string(), missing.front());
  return o;
}

std::size_t scan_target(const RunConfig& config, const ScanOrder& o) {
  return o.explicit_ids ? o.order.size() : (config.num_cases > 0 ? static_cast<std::size_t>(config.num_cases) : o.order.size());
}

std::size_t scan_round(std::size_t left, std::size_t missing) {
  constexpr std::size_t kRound = 64;
  return std::min(left, std::clamp<std::size_t>(missing, 8, kRound));
}

namespace {

struct Candidate {
  UsableCase c;
  std::string skip_reason;  // set when the record cannot be built into a prompt
};

}  // namespace

// Records are built (tokenised) here, cheaply; their clean and noised passes are the expensive part
// and go through the executor in chunks, their contrasts stored per position in the scan order.
// The records considered per round depend only on how many usable cases are still missing, so the
// stored table is the same whatever the chunk size, rank count or restarts.
ScanResult CaseScanner::scan(const std::vector<CounterFactRecord>& records, const ScanSettings& settings,
                             RowExecutor& executor) const {
  ScanResult result;
  result.sigma = sigma_base_ * settings.noise_multiplier;
  const ScanOrder so = scan_order(config_, records);
  const std::vector<int>& order = so.order;
  const bool explicit_ids = so.explicit_ids;
  const std::size_t target = scan_target(config_, so);
  ProgressMeter progress("case scan", "usable cases", target, config_.progress_every_s);
  const std::vector<RowOutput> outputs{{TracingResults::scan_table(settings.noise_multiplier), 2}};
  for (std::size_t pos = 0; pos < order.size() && result.cases.size() < target;) {
    // The tail of a round past the target is computed for nothing: rounds shrink near it.
    const std::size_t n = scan_round(order.size() - pos, target - result.cases.size());
    std::vector<Candidate> pending;
    std::vector<int> to_run;  // positions in `order`
    for (std::size_t j = pos; j < pos + n; ++j) {
      const CounterFactRecord& rec = records[order[j]];
      BuiltCase built = builder_.build(rec);
      if (!built.skip_reason.empty() && explicit_ids)
        fail_input("case {} of the explicit case list cannot be used: {}", rec.case_id, built.skip_reason);
      if (built.skip_reason.empty()) to_run.push_back(static_cast<int>(j));
      pending.push_back({UsableCase{rec, built.prompt_text, built.prompt, NAN, NAN,
                                    explicit_ids ? so.fixed_split[j] : Split::Discovery},
                         built.skip_reason});
    }
    auto candidate = [&](int position) -> UsableCase& { return pending[static_cast<std::size_t>(position) - pos].c; };
    const Matrix2 contrasts = contrast_rows(executor, static_cast<int>(order.size()), to_run, outputs, candidate,
                                            settings.noise_multiplier);
    for (int p : to_run) {
      candidate(p).d_clean = contrasts.at(p, 0);
      candidate(p).d_noised = contrasts.at(p, 1);
    }
    pos += n;
    for (Candidate& p : pending) {
      if (result.cases.size() >= target) break;
      if (accept(std::move(p.c), p.skip_reason, settings.filter, explicit_ids, result)) progress.update(result.cases.size());
    }
  }
  progress.finish();
  if (!explicit_ids) {
    std::vector<int> discovery, validation;
    split_halves(static_cast<int>(result.cases.size()), settings.split_seed, discovery, validation);
    for (int i : validation) result.cases[i].split = Split::Validation;
  }
  if (config_.num_cases > 0 && !explicit_ids && static_cast<int>(result.cases.size()) < config_.num_cases)
    spdlog::warn("only {} usable cases found in {} records (asked for {})", result.cases.size(), result.records_seen,
                 config_.num_cases);
  return result;
}

// The clean and mean noised contrast of the candidates at `positions` (of a table of `rows`).
Matrix2 CaseScanner::contrast_rows(RowExecutor& executor, int rows, const std::vector<int>& positions,
                                   const std::vector<RowOutput>& outputs,
                                   const std::function<UsableCase&(int)>& candidate, double multiplier) const {
  const RowCost cost = [&](int position) { return static_cast<double>(candidate(position).prompt.num_tokens()); };
  return executor.run_rows("", rows, positions, cost, outputs, [&](const std::vector<int>& chunk_positions) {
    std::vector<const UsableCase*> chunk;
    for (int p : chunk_positions) chunk.push_back(&candidate(p));
    std::vector<std::vector<double>> out;
    for (const auto& tc : prepared_.get(chunk, multiplier, RecordLevel::Base)) {
      double sum = 0;
      for (const StreamOutput& o : tc->noised) sum += o.contrast;
      out.push_back({tc->clean.contrast, sum / static_cast<double>(tc->noised.size())});
    }
    return out;
  });
}

// A scanned record: counted, then kept as a usable case or skipped with its reason. Explicit case
// lists are the paper's fixed sets: they are kept whatever the filter says.
bool CaseScanner::accept(UsableCase c, const std::string& skip_reason, FilterKind filter, bool explicit_ids,
                         ScanResult& result) {
  ++result.records_seen;
  std::string reason = skip_reason;
  if (reason.empty() && !explicit_ids && !passes_filter(filter, c.d_clean, c.d_noised))
    reason = c.d_clean < (filter == FilterKind::Strict ? 1.0 : 0.5) ? "filtered: clean contrast too small"
                                                                   : "filtered: noise does not lower the contrast enough";
  if (!reason.empty()) {
    ++result.skipped[reason];
    result.skipped_cases.emplace_back(c.record.case_id, reason);
    return false;
  }
  result.cases.push_back(std::move(c));
  return true;
}

}  // namespace moetrace
