#include "util/counter_rng.h"

#include <cmath>
#include <numbers>
#include <string>

#include "util/error.h"

namespace moetrace {

namespace {
constexpr double kTwoPi = 2.0 * std::numbers::pi;  // 6.283185307179586
constexpr double kTwoPow52Inv = 1.0 / 4503599627370496.0;  // 2^-52

std::array<double, 2> box_muller(const PhiloxCounter& w) {
  const double u1 = uniform_from_words(w[0], w[1]);
  const double u2 = uniform_from_words(w[2], w[3]);
  const double r = std::sqrt(-2.0 * std::log(u1));
  const double t = kTwoPi * u2;
  return {r * std::cos(t), r * std::sin(t)};
}
}  // namespace

double uniform_from_words(std::uint32_t hi, std::uint32_t lo) {
  const std::uint64_t m = ((static_cast<std::uint64_t>(hi) << 32) | lo) >> 12;
  return (static_cast<double>(m) + 0.5) * kTwoPow52Inv;
}

NoiseStream::NoiseStream(std::uint64_t seed, std::uint64_t case_id, std::uint32_t sample)
    : key_{static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32)},
      case_lo_(static_cast<std::uint32_t>(case_id)),
      case_hi_(static_cast<std::uint32_t>(case_id >> 32)),
      sample_(sample) {}

PhiloxCounter NoiseStream::block(std::uint32_t b) const {
  return philox4x32_10({case_lo_, case_hi_, sample_, b}, key_);
}

std::array<double, 2> NoiseStream::normal_pair(std::uint32_t b) const { return box_muller(block(b)); }

std::uint32_t NoiseStream::next_u32() {
  MOETRACE_ASSERT(pos_ < kWordsPerStream, "noise stream exhausted (2^34 words)");
  const std::uint64_t b = pos_ >> 2;
  if (b != buf_block_) {
    buf_ = block(static_cast<std::uint32_t>(b));
    buf_block_ = b;
  }
  return buf_[pos_++ & 3];
}

double NoiseStream::next_uniform() {
  const std::uint32_t hi = next_u32();
  const std::uint32_t lo = next_u32();
  return uniform_from_words(hi, lo);
}

double NoiseStream::next_normal() {
  if (has_cached_normal_) {
    has_cached_normal_ = false;
    return cached_normal_;
  }
  PhiloxCounter w;
  for (auto& x : w) x = next_u32();
  const auto z = box_muller(w);
  cached_normal_ = z[1];
  has_cached_normal_ = true;
  return z[0];
}

void NoiseStream::fill_normal(float* out, std::size_t n, double scale, std::uint64_t first) const {
  if (n == 0) return;
  MOETRACE_ASSERT(first + n <= (kWordsPerStream >> 1),
                  "fill_normal past the end of the stream (2^33 normals)");
  std::size_t i = 0;
  std::uint64_t idx = first;
  if (idx & 1) {  // odd start: second half of a pair
    out[i++] = static_cast<float>(scale * normal_pair(static_cast<std::uint32_t>(idx >> 1))[1]);
    ++idx;
  }
  for (; i + 1 < n; i += 2, idx += 2) {
    const auto z = normal_pair(static_cast<std::uint32_t>(idx >> 1));
    out[i] = static_cast<float>(scale * z[0]);
    out[i + 1] = static_cast<float>(scale * z[1]);
  }
  if (i < n) out[i] = static_cast<float>(scale * normal_pair(static_cast<std::uint32_t>(idx >> 1))[0]);
}

}  // namespace moetrace
