#include "protocols/case_scan.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "protocols/selection.h"
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

ScanResult CaseScanner::scan(const std::vector<CounterFactRecord>& records, const ScanSettings& settings,
                             RowExecutor& executor) const {
  ScanResult result;
  result.sigma = sigma_base_ * settings.noise_multiplier;
  std::unordered_map<std::int64_t, int> by_id;
  for (int i = 0; i < static_cast<int>(records.size()); ++i) by_id[records[i].case_id] = i;

  // The order in which records are considered, and (explicit mode) their fixed split.
  std::vector<int> order;
  std::vector<Split> fixed_split;
  const bool explicit_ids = !config_.case_ids_path.empty();
  if (explicit_ids) {
    const CaseIdSplit ids = read_case_id_split(config_.case_ids_path, config_.case_ids_key);
    std::vector<std::int64_t> missing;
    for (auto [list, split] : {std::pair{&ids.discovery, Split::Discovery}, std::pair{&ids.validation, Split::Validation}})
      for (std::int64_t id : *list) {
        auto it = by_id.find(id);
        if (it == by_id.end()) {
          missing.push_back(id);
          continue;
        }
        order.push_back(it->second);
        fixed_split.push_back(split);
      }
    if (!missing.empty())
      fail_input("{}: {} listed case ids are not in {} (first: {})", config_.case_ids_path.string(), missing.size(),
                 config_.counterfact_path.string(), missing.front());
  } else {
    constexpr std::uint64_t kShuffleTag = 0x73687566666c65ULL;  // "shuffle"
    order = seeded_permutation(static_cast<int>(records.size()), config_.shuffle_seed, kShuffleTag);
    if (config_.max_records > 0 && static_cast<int>(order.size()) > config_.max_records) order.resize(config_.max_records);
  }

  const std::size_t target = explicit_ids ? order.size() : (config_.num_cases > 0 ? config_.num_cases : order.size());
  ProgressMeter progress("case scan", "usable cases", target, config_.progress_every_s);
  auto skip = [&](std::int64_t id, const std::string& reason) {
    ++result.skipped[reason];
    result.skipped_cases.emplace_back(id, reason);
  };
  // Records are built (tokenised) here, cheaply; their clean and noised passes are the expensive part
  // and go through the executor in chunks, their contrasts stored per position in `order`. The
  // records considered per round depend only on how many usable cases are still missing, so the
  // stored table is the same whatever the chunk size, rank count or restarts.
  const std::size_t round = 64;  // records per executor call
  struct Candidate {
    UsableCase c;
    std::string skip_reason;  // set when the record cannot be built into a prompt
  };
  const std::vector<RowOutput> outputs{{fmt::format("{}/multiplier_{}", layout::kScan, settings.noise_multiplier), 2}};
  for (std::size_t pos = 0; pos < order.size() && result.cases.size() < target;) {
    // Never more than the cases still missing (but at least a few): the tail of a round past the
    // target is computed for nothing.
    const std::size_t n = std::min(order.size() - pos, std::clamp<std::size_t>(target - result.cases.size(), 8, round));
    std::vector<Candidate> pending;
    std::vector<int> to_run;  // positions in `order`
    for (std::size_t j = pos; j < pos + n; ++j) {
      const CounterFactRecord& rec = records[order[j]];
      BuiltCase built = builder_.build(rec);
      if (!built.skip_reason.empty() && explicit_ids)
        fail_input("case {} of the explicit case list cannot be used: {}", rec.case_id, built.skip_reason);
      if (built.skip_reason.empty()) to_run.push_back(static_cast<int>(j));
      pending.push_back({UsableCase{rec, built.prompt_text, built.prompt, NAN, NAN,
                                    explicit_ids ? fixed_split[j] : Split::Discovery},
                         built.skip_reason});
    }
    auto candidate = [&](int position) -> Candidate& { return pending[static_cast<std::size_t>(position) - pos]; };
    executor.set_row_cost([&](int position) { return static_cast<double>(candidate(position).c.prompt.num_tokens()); });
    const Matrix2 contrasts = executor.run_rows(
        "", static_cast<int>(order.size()), to_run, outputs, [&](const std::vector<int>& positions) {
          std::vector<const UsableCase*> chunk;
          for (int p : positions) chunk.push_back(&candidate(p).c);
          std::vector<std::vector<double>> rows;
          for (const auto& tc : prepared_.get(chunk, settings.noise_multiplier, RecordLevel::Base)) {
            double sum = 0;
            for (const StreamOutput& o : tc->noised) sum += o.contrast;
            rows.push_back({tc->clean.contrast, sum / static_cast<double>(tc->noised.size())});
          }
          return rows;
        });
    executor.set_row_cost(nullptr);
    for (int p : to_run) {
      candidate(p).c.d_clean = contrasts.at(p, 0);
      candidate(p).c.d_noised = contrasts.at(p, 1);
    }
    pos += n;
    for (Candidate& p : pending) {
      if (result.cases.size() >= target) break;
      ++result.records_seen;
      if (!p.skip_reason.empty()) {
        skip(p.c.record.case_id, p.skip_reason);
        continue;
      }
      // Explicit case lists are the paper's fixed sets: they are kept whatever the filter says.
      if (!explicit_ids && !passes_filter(settings.filter, p.c.d_clean, p.c.d_noised)) {
        skip(p.c.record.case_id, p.c.d_clean < (settings.filter == FilterKind::Strict ? 1.0 : 0.5)
                                     ? "filtered: clean contrast too small"
                                     : "filtered: noise does not lower the contrast enough");
        continue;
      }
      result.cases.push_back(std::move(p.c));
      progress.update(result.cases.size());
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

}  // namespace moetrace
