#pragma once
// Counter-based random numbers for reproducible noise and resampling: Philox4x32-10 (Salmon,
// Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC'11; the Random123
// library). Every number is a pure function of (seed, case_id, sample, position), so noise never
// depends on MPI rank, batch composition, thread count or restarts.
//
// EXACT MAPPING (results files depend on it; do not change without bumping their format):
//
//   key     = { seed & 0xffffffff, seed >> 32 }                         (Philox key k0, k1)
//   counter = { case_id & 0xffffffff, case_id >> 32, sample, b }       (Philox ctr c0..c3)
//
//   Block b (b = 0 .. 2^32-1) gives four 32-bit words philox4x32_10(counter, key)[0..3].
//   The stream of a (seed, case_id, sample) is the word sequence W_0, W_1, ... with
//   W_{4b+j} = word j of block b. A stream holds 2^34 words; reading past that is an error.
//
//   uniform from two words (hi, lo):  m = ((hi << 32) | lo) >> 12     (the top 52 bits)
//                                     u = (m + 0.5) * 2^-52 = (2m + 1) * 2^-53
//     exact in double, strictly inside (0, 1): 2^-53 <= u <= 1 - 2^-53.
//
//   normal pair k (normals Z_{2k}, Z_{2k+1}) from block k:
//     u1 = uniform(W_{4k}, W_{4k+1}),  u2 = uniform(W_{4k+2}, W_{4k+3})
//     r  = sqrt(-2 ln u1),  t = (2*pi) * u2      (2*pi = 6.283185307179586, a double)
//     Z_{2k} = r cos t,  Z_{2k+1} = r sin t      (Box-Muller, all in double, both outputs used)
//
// NoiseStream reads the stream sequentially: next_u32 takes one word, next_uniform two
// (W_p = hi, W_{p+1} = lo), next_normal four (u1 then u2 as above) and returns r cos t, keeping
// r sin t for the next next_normal call (next_u32/next_uniform leave that cached value alone).
// So on a fresh stream, successive next_normal() calls return Z_0, Z_1, Z_2, ...
// fill_normal is stateless: it writes Z_{first+i}, independent of any sequential reads.
#include <array>
#include <cstddef>
#include <cstdint>

namespace moetrace {

using PhiloxCounter = std::array<std::uint32_t, 4>;
using PhiloxKey = std::array<std::uint32_t, 2>;

// Philox4x32 with 10 rounds, as Random123's philox4x32 (key bumped before rounds 2..10).
constexpr PhiloxCounter philox4x32_10(PhiloxCounter c, PhiloxKey k) {
  constexpr std::uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;  // multipliers
  constexpr std::uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;  // Weyl key increments
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k[0] += kW0;
      k[1] += kW1;
    }
    const std::uint64_t p0 = static_cast<std::uint64_t>(kM0) * c[0];
    const std::uint64_t p1 = static_cast<std::uint64_t>(kM1) * c[2];
    c = {static_cast<std::uint32_t>(p1 >> 32) ^ c[1] ^ k[0], static_cast<std::uint32_t>(p1),
         static_cast<std::uint32_t>(p0 >> 32) ^ c[3] ^ k[1], static_cast<std::uint32_t>(p0)};
  }
  return c;
}

// u = (m + 0.5) * 2^-52 with m the top 52 bits of (hi << 32 | lo); see the mapping above.
double uniform_from_words(std::uint32_t hi, std::uint32_t lo);

class NoiseStream {
 public:
  static constexpr std::uint64_t kWordsPerStream = std::uint64_t{1} << 34;

  NoiseStream(std::uint64_t seed, std::uint64_t case_id, std::uint32_t sample);

  // Block b of this stream: philox4x32_10({case_lo, case_hi, sample, b}, {seed_lo, seed_hi}).
  PhiloxCounter block(std::uint32_t b) const;
  // Normals Z_{2b} and Z_{2b+1} of this stream (Box-Muller on block b).
  std::array<double, 2> normal_pair(std::uint32_t b) const;

  std::uint32_t next_u32();
  double next_uniform();  // open interval (0, 1), 52-bit resolution (see above)
  double next_normal();   // standard normal, Box-Muller

  // out[i] = float(scale * Z_{first + i}) for i in [0, n). Does not read or move the sequential
  // position: element i depends only on (seed, case_id, sample, first + i).
  void fill_normal(float* out, std::size_t n, double scale, std::uint64_t first = 0) const;

  // Words consumed so far by next_u32 / next_uniform / next_normal.
  std::uint64_t position() const { return pos_; }

 private:
  PhiloxKey key_;
  std::uint32_t case_lo_, case_hi_, sample_;
  std::uint64_t pos_ = 0;
  PhiloxCounter buf_{};
  std::uint64_t buf_block_ = ~std::uint64_t{0};
  double cached_normal_ = 0.0;
  bool has_cached_normal_ = false;
};

}  // namespace moetrace
