#pragma once
// What the backend op suites share (tests/backend/test_cpu_backend_ops.cpp,
// tests/gpu/test_cuda_backend_ops.cpp, tests/engine/test_routing.cpp): random operands,
// checkpoint-like weights for upload_weight, downloads, the relative-error measure with its check,
// and routing requests built from per-row deactivation lists.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "util/half_precision.h"

namespace moetrace::test {

inline std::vector<float> randn(std::mt19937& rng, std::size_t n, float scale = 1.f) {
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

inline std::vector<float> round_bf16(std::vector<float> v) {
  for (float& x : v) x = bf16_to_float(float_to_bf16(x));
  return v;
}

// A float32 or bf16 checkpoint-like tensor for upload_weight. `f` holds the values the backend
// sees (rounded to bf16 in bf16), so references computed from `f` need no further rounding.
struct HostWeight {
  std::vector<float> f;
  std::vector<std::uint16_t> b;
  TensorView view;
  HostWeight(std::string name, std::vector<std::int64_t> shape, std::vector<float> values, bool as_bf16 = false)
      : f(std::move(values)) {
    view.name = std::move(name);
    view.file = "test";
    view.shape = std::move(shape);
    if (as_bf16) {
      for (float x : f) b.push_back(float_to_bf16(x));
      for (std::size_t i = 0; i < f.size(); ++i) f[i] = bf16_to_float(b[i]);
      view.dtype = DType::BF16;
      view.data = reinterpret_cast<const std::byte*>(b.data());
    } else {
      view.dtype = DType::F32;
      view.data = reinterpret_cast<const std::byte*>(f.data());
    }
  }
};

inline std::vector<float> get(Backend& b, const Tensor& t) {
  std::vector<float> v(static_cast<std::size_t>(t.rows()) * t.cols());
  b.download(t, v.data());
  return v;
}

// max|a - ref| / max|ref| (max|a - ref| where ref is all zero); infinite if `a` holds NaN/Inf.
template <typename Ref>
double rel_err(const std::vector<float>& a, const std::vector<Ref>& ref) {
  BOOST_REQUIRE_EQUAL(a.size(), ref.size());
  double md = 0, mr = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    md = std::max(md, std::fabs(static_cast<double>(a[i]) - static_cast<double>(ref[i])));
    mr = std::max(mr, std::fabs(static_cast<double>(ref[i])));
  }
  return mr > 0 ? md / mr : md;
}

inline bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// A RouteRequest whose deactivations are given per row (as the reference routing takes them), in CSR form.
inline RouteRequest route_request(int k, bool renormalise, const std::vector<std::vector<int>>& masked = {},
                                  int layer = 0) {
  RouteRequest q;
  q.layer = layer;
  q.k = k;
  q.renormalise = renormalise;
  if (!masked.empty()) {
    q.mask_offsets.push_back(0);
    for (const std::vector<int>& m : masked) {
      q.mask_experts.insert(q.mask_experts.end(), m.begin(), m.end());
      q.mask_offsets.push_back(static_cast<int>(q.mask_experts.size()));
    }
  }
  return q;
}

}  // namespace moetrace::test

#define CHECK_CLOSE(got, ref, tol, what)                                                          \
  do {                                                                                            \
    const double e_ = ::moetrace::test::rel_err(got, ref);                                        \
    BOOST_TEST_MESSAGE(what << ": max|diff|/max|ref| = " << e_);                                  \
    BOOST_TEST(e_ <= (tol), what << ": relative error " << e_ << " above " << (tol));             \
  } while (0)
