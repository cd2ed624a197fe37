#include "protocols/noise_scale.h"

#include <numeric>

#include "util/error.h"

namespace moetrace {

double embedding_matrix_std(Backend& backend, const Weight& embed) {
  std::vector<int> rows(static_cast<std::size_t>(embed.rows()));
  std::iota(rows.begin(), rows.end(), 0);
  return rows.empty() ? 0.0 : backend.rows_std(embed, rows);
}

double subject_embedding_std(Backend& backend, const Weight& embed,
                             const std::vector<std::vector<int>>& subject_tokens) {
  std::vector<int> rows;
  for (const auto& ids : subject_tokens) rows.insert(rows.end(), ids.begin(), ids.end());
  if (rows.empty()) fail_input("sigma rule subject_std: no subject tokens to measure");
  return backend.rows_std(embed, rows);
}

double noise_sigma_base(const RunConfig& config, Backend& backend, const DeviceModel& model, const CaseBuilder& builder,
                        const std::vector<CounterFactRecord>& records) {
  if (config.sigma_rule == SigmaRule::EmbeddingStd) return embedding_matrix_std(backend, *model.embed);
  std::vector<std::vector<int>> subjects;
  for (const auto& r : records) {
    BuiltCase b = builder.build(r);
    if (b.skip_reason.empty())
      subjects.emplace_back(b.prompt.ids.begin() + b.prompt.subject_begin, b.prompt.ids.begin() + b.prompt.subject_end);
  }
  return subject_embedding_std(backend, *model.embed, subjects);
}

}  // namespace moetrace
