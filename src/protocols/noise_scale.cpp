#include "protocols/noise_scale.h"

#include <cmath>

#include "util/error.h"

namespace moetrace {
namespace {

// Population standard deviation over a stream of values (Welford: stable for large matrices).
struct RunningStd {
  double mean = 0, m2 = 0;
  std::size_t n = 0;
  void add(double x) {
    ++n;
    const double d = x - mean;
    mean += d / static_cast<double>(n);
    m2 += d * (x - mean);
  }
  double value() const { return n ? std::sqrt(m2 / static_cast<double>(n)) : 0.0; }
};

}  // namespace

double embedding_matrix_std(const TensorView& embed) {
  const std::vector<float> v = embed.to_float();
  RunningStd s;
  for (float x : v) s.add(x);
  return s.value();
}

double subject_embedding_std(const TensorView& embed, const std::vector<std::vector<int>>& subject_tokens) {
  const std::int64_t V = embed.shape[0], H = embed.shape[1];
  const std::vector<float> v = embed.to_float();
  RunningStd s;
  for (const auto& ids : subject_tokens)
    for (int id : ids) {
      MOETRACE_ASSERT(id >= 0 && id < V, "subject token outside the vocabulary");
      for (std::int64_t h = 0; h < H; ++h) s.add(v[static_cast<std::size_t>(id) * H + h]);
    }
  if (s.n == 0) fail_input("sigma rule subject_std: no subject tokens to measure");
  return s.value();
}

}  // namespace moetrace
