#pragma once
// Selection rules of the protocol (docs/PROTOCOL.md), on plain matrices of rescues: they decide
// which layer and expert are reported, so they live apart from the code that computes rescues.
#include <cmath>
#include <cstdint>
#include <vector>

namespace moetrace {

// Row-major matrix with NaN marking "not computed".
struct Matrix2 {
  int rows = 0, cols = 0;
  std::vector<double> v;
  Matrix2() = default;
  Matrix2(int r, int c, double fill) : rows(r), cols(c), v(static_cast<std::size_t>(r) * c, fill) {}
  double& at(int r, int c) { return v[static_cast<std::size_t>(r) * cols + c]; }
  double at(int r, int c) const { return v[static_cast<std::size_t>(r) * cols + c]; }
};

// Mean of column c over the given rows, skipping NaN; NaN when nothing is left.
double column_mean(const Matrix2& m, int c, const std::vector<int>& rows);

// argmax over columns of the mean over `rows` (ties: the lower column). -1 if every mean is NaN.
int select_best_column(const Matrix2& m, const std::vector<int>& rows);

// Experts clean-active (active[r][e] != 0) in at least `threshold` (a fraction) of `rows`.
std::vector<int> expert_candidates(const Matrix2& active, const std::vector<int>& rows, double threshold);

// The candidate with the highest mean rescue over `rows`, with rescue counted as 0 where the expert
// is not clean-active (so an expert that is rarely active cannot win on a few large rescues).
// Returns -1 when there is no candidate.
int select_expert(const Matrix2& rescue, const Matrix2& active, const std::vector<int>& rows,
                  const std::vector<int>& candidates);

// Rescue of expert e in row r with the protocol's convention (0 where not clean-active).
double rescue_or_zero(const Matrix2& rescue, const Matrix2& active, int r, int e);

// Controls of the selected expert in one case, from that case's per-expert row at the layer
// (rescue, clean-active flag and clean routing weight per expert). NaN / -1 where the selected
// expert is not clean-active or has no clean-active peer.
struct ExpertControls {
  double sampled = NAN;         // mean rescue of `num_sampled` other clean-active experts (all if fewer)
  int gate_matched_expert = -1;  // the other clean-active expert with the closest clean weight
  double gate_matched = NAN;
};
ExpertControls expert_controls(const std::vector<double>& rescue, const std::vector<double>& active,
                               const std::vector<double>& weight, int expert, int num_sampled, std::uint64_t seed,
                               std::int64_t case_id);

// Random split of indices into two halves (first half: discovery), reproducible from the seed.
void split_halves(int n, std::uint64_t seed, std::vector<int>& first, std::vector<int>& second);

// A reproducible permutation of 0..n-1 keyed by (seed, stream tag).
std::vector<int> seeded_permutation(int n, std::uint64_t seed, std::uint64_t tag);

}  // namespace moetrace
