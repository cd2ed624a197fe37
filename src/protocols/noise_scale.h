#pragma once
// The sigma rules of the corruption (docs/PROTOCOL.md): the standard deviation of the whole
// embedding matrix (paper), or of the embeddings of every subject token of the data set (ROME).
// The configured multiplier is applied by the caller.
#include <vector>

#include "model/safetensors_file.h"

namespace moetrace {

double embedding_matrix_std(const TensorView& embed);
// subject_tokens: the token ids of each case's subject span (one entry per occurrence).
double subject_embedding_std(const TensorView& embed, const std::vector<std::vector<int>>& subject_tokens);

}  // namespace moetrace
