#pragma once
// Selection rules of the protocol (docs/PROTOCOL.md), on plain matrices of rescues: they decide
// which layer and expert are reported, so they live apart from the code that computes rescues.
#include <cmath>
#include <cstdint>
#include <string>
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

// The layer selection rule (docs/statistics.md, "Ties and flat curves"). Means within
// `tie_tolerance` x scale of the best are tied and the earliest of them is selected, so that float
// rounding never decides the pick; scale = the largest |mean| over the curve.
inline constexpr double kDefaultTieTolerance = 1e-6;
inline constexpr double kNearTieTolerance = 0.01;   // runner-up within 1% of the scale: a near-tie
inline constexpr double kZeroRescueTolerance = 1e-6;  // |means| <= this x the clean-noised gap: "no rescue"
struct LayerChoice {
  int layer = -1;             // -1 when every mean is NaN
  std::vector<int> tied;      // every layer within the tie tolerance of the best (ascending; holds `layer`)
  std::vector<int> near_tied; // layers outside the tie tolerance but within kNearTieTolerance x scale
  bool flat = false;          // every finite layer is tied (the curve does not discriminate)
  bool zero = false;          // every |mean| <= kZeroRescueTolerance x gap: no layer rescues anything
  bool no_rescue = false;     // the selected mean itself is <= kZeroRescueTolerance x gap
  double scale = 0;           // max |mean| over the curve
};
// `means`: one value per layer (NaN: not computed); `gap`: the mean clean-noised contrast gap
// (d_clean - d_noised) of the same cases, the size a rescue is measured against (|gap| is used).
LayerChoice choose_layer(const std::vector<double>& means, double gap, double tie_tolerance = kDefaultTieTolerance);
// One line per warning the choice deserves (flat, zero, no rescue at the selection, tie, near-tie).
std::vector<std::string> layer_choice_warnings(const LayerChoice& c, const std::vector<double>& means);

// argmax over columns of the mean over `rows` with the tie rule above (tied: the lower column).
// -1 if every mean is NaN.
int select_best_column(const Matrix2& m, const std::vector<int>& rows, double tie_tolerance = kDefaultTieTolerance);

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

// The tag of the discovery / validation split's random stream ("split"), xor-ed into or beside a
// split seed: split_halves here, the question split of `moetrace localize`.
inline constexpr std::uint64_t kSplitSeedTag = 0x73706c6974ull;
// Random split of indices into two halves (first half: discovery), reproducible from the seed.
void split_halves(int n, std::uint64_t seed, std::vector<int>& first, std::vector<int>& second);

// A reproducible permutation of 0..n-1 keyed by (seed, stream tag).
std::vector<int> seeded_permutation(int n, std::uint64_t seed, std::uint64_t tag);

}  // namespace moetrace
