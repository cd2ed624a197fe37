#pragma once
// The sigma rules of the corruption (docs/PROTOCOL.md): the standard deviation of the whole
// embedding matrix (paper), or of the embeddings of every subject token of the data set (ROME),
// computed by the backend that holds the table (Backend::rows_std). The configured multiplier is
// applied by the caller.
#include <vector>

#include "backend/backend.h"
#include "engine/device_model.h"
#include "protocols/case_scan.h"
#include "protocols/run_config.h"

namespace moetrace {

double embedding_matrix_std(Backend& backend, const Weight& embed);
// subject_tokens: the token ids of each case's subject span (one entry per occurrence).
double subject_embedding_std(Backend& backend, const Weight& embed,
                             const std::vector<std::vector<int>>& subject_tokens);
// sigma for noise multiplier 1 under the config's rule: of the embedding matrix, or of the subject
// tokens of every record that builds into a prompt.
double noise_sigma_base(const RunConfig& config, Backend& backend, const DeviceModel& model, const CaseBuilder& builder,
                        const std::vector<CounterFactRecord>& records);

}  // namespace moetrace
