#pragma once
// Stage 1 of the protocol: CounterFact records to usable cases. Builds prompts, applies the
// object-token rule, runs the clean and noised passes, filters, and splits into discovery and
// validation. Every record that is not used is counted under a reason.
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "engine/case_tracer.h"
#include "protocols/counterfact.h"
#include "protocols/prepared_cases.h"
#include "protocols/row_executor.h"
#include "protocols/run_config.h"

namespace moetrace {

// A record turned into token ids, or the reason it cannot be.
struct BuiltCase {
  std::string skip_reason;  // empty when usable
  std::string prompt_text;
  Prompt prompt;
};

// Text to ids is the tokenizer's business; the scan only needs this.
class CaseBuilder {
 public:
  virtual ~CaseBuilder() = default;
  virtual BuiltCase build(const CounterFactRecord& record) const = 0;
  // Each token's text as the tokenizer decodes it alone (for labelling heat maps); by default the ids.
  virtual std::vector<std::string> token_texts(const std::vector<int>& ids) const {
    std::vector<std::string> out;
    for (int id : ids) out.push_back(std::to_string(id));
    return out;
  }
};

enum class Split { Discovery = 0, Validation = 1 };

struct UsableCase {
  CounterFactRecord record;
  std::string prompt_text;
  Prompt prompt;
  double d_clean = 0;
  double d_noised = 0;  // mean over noise samples
  Split split = Split::Discovery;
};

struct ScanResult {
  std::vector<UsableCase> cases;
  std::map<std::string, int> skipped;  // reason -> count
  std::vector<std::pair<std::int64_t, std::string>> skipped_cases;  // (case_id, reason)
  int records_seen = 0;
  double sigma = 0;
};

struct ScanSettings {
  double noise_multiplier = 3.0;
  FilterKind filter = FilterKind::Strict;
  std::uint64_t split_seed = 0;
};

// Filter thresholds of the protocol: strict D_clean >= 1 and D_clean - D_noised >= 0.5;
// relaxed 0.5 and 0.25.
bool passes_filter(FilterKind filter, double d_clean, double d_noised);

// The order in which records are considered, and (explicit mode) their fixed split.
struct ScanOrder {
  std::vector<int> order;  // indices into the records
  std::vector<Split> fixed_split;
  bool explicit_ids = false;
};
ScanOrder scan_order(const RunConfig& config, const std::vector<CounterFactRecord>& records);
// Usable cases the scan looks for: every listed case, or [cases] n (0: every record).
std::size_t scan_target(const RunConfig& config, const ScanOrder& order);
// Records the scan considers in its next round, `left` records not yet considered and `missing` usable
// cases still wanted: never more than the cases still missing (but at least a few), at most 64.
std::size_t scan_round(std::size_t left, std::size_t missing);

class CaseScanner {
 public:
  CaseScanner(const RunConfig& config, const CaseBuilder& builder, PreparedCases& prepared, double sigma_base);
  // Scans the records (explicit case ids or shuffle-and-scan) until enough usable cases.
  // The clean and noised passes run through `executor`, in chunks; their contrasts are stored per
  // record (results layout kScan, one table per noise multiplier), so a resumed scan computes only
  // records not yet seen. Usable cases are taken in record order, so the result does not depend on
  // the chunking.
  ScanResult scan(const std::vector<CounterFactRecord>& records, const ScanSettings& settings,
                  RowExecutor& executor) const;

 private:
  Matrix2 contrast_rows(RowExecutor& executor, int rows, const std::vector<int>& positions,
                        const std::vector<RowOutput>& outputs, const std::function<UsableCase&(int)>& candidate,
                        double multiplier) const;
  static bool accept(UsableCase c, const std::string& skip_reason, FilterKind filter, bool explicit_ids,
                     ScanResult& result);

  const RunConfig& config_;
  const CaseBuilder& builder_;
  PreparedCases& prepared_;
  double sigma_base_;  // sigma for multiplier 1
};

}  // namespace moetrace
