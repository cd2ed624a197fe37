#include "backend/cpu/cpu_matmul.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <unordered_map>
#include <map>
#include <mutex>
#include <new>
#include <tuple>

#include <Eigen/Dense>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <oneapi/dnnl/dnnl.hpp>

#include "util/error.h"
#include "util/half_precision.h"

namespace moetrace::cpu {
namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;
using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMap = Eigen::Map<const RowMajor>;
using OutMap = Eigen::Map<RowMajor, 0, Eigen::OuterStride<>>;

const dnnl::engine& engine() {
  static const dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

dt dnnl_type(WeightType t) { return t == WeightType::BF16 ? dt::bf16 : dt::f32; }

// A grow-only buffer per thread: the steady state allocates nothing.
template <typename T>
T* workspace(std::vector<T>& v, std::size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}
thread_local std::vector<std::uint16_t> tls_x_bf16;
thread_local std::vector<float> tls_x_f32, tls_w_block;
thread_local std::vector<float> tls_scratch;  // oneDNN's scratchpad (user-managed), 4-byte units

// matmul primitives by (m, k, n, weight type): the weights' packed layout depends on (k, n, type)
// only, so one packing serves every m.
struct Primitive {
  dnnl::matmul prim;
  std::size_t scratch_bytes = 0;
};

dnnl::matmul::primitive_desc make_pd(dnnl::memory::dim m, dnnl::memory::dim k, dnnl::memory::dim n, WeightType t,
                                     const dnnl::memory::desc& weights) {
  const dnnl::memory::desc src({m, k}, dnnl_type(t), tag::ab);
  const dnnl::memory::desc dst({m, n}, dt::f32, tag::ab);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, weights, dst), attr, engine());
}

// Cached per shape; bounded, because expert tasks bring many distinct row counts: past kMaxCached
// entries the cache starts over (callers hold their own reference while they execute).
constexpr std::size_t kMaxCached = 2048;

std::shared_ptr<const Primitive> primitive(int m, int k, int n, WeightType t, const dnnl::memory::desc& weights) {
  static std::mutex mutex;
  static std::map<std::tuple<int, int, int, int>, std::shared_ptr<const Primitive>> cache;
  std::lock_guard<std::mutex> lock(mutex);
  const auto key = std::make_tuple(m, k, n, static_cast<int>(t));
  if (const auto it = cache.find(key); it != cache.end()) return it->second;
  if (cache.size() >= kMaxCached) cache.clear();
  auto p = std::make_shared<Primitive>();
  auto pd = make_pd(m, k, n, t, weights);
  p->scratch_bytes = pd.scratchpad_desc().get_size();
  p->prim = dnnl::matmul(pd);
  cache.emplace(key, p);
  return p;
}

// y[m, rows] (row stride ldy) = x[m, k] w[rows, k]^T with Eigen, such that every row of y depends only
// on the same row of x, never on m (the pipeline batches any number of cases into one call, and
// results must not depend on the chunk size): Eigen sums a single row (GEMV), tiny products and the
// rows past the last full SIMD packet in other orders, and a multi-threaded GEMM blocks the depth by
// the thread count. So the rows are padded to whole packets (at least two, and at least 20 in
// rows + cols + depth) and the product runs on the calling thread (outside an OpenMP region
// Eigen::nbThreads() is set to 1 for it; inside one Eigen never starts threads). tests/pipeline/test_row_independence.cpp checks the property on every CPU mode.
void row_independent_block(const float* x, int m, int k, const float* w, int rows, float* y, int ldy) {
  constexpr int kPacket = Eigen::internal::packet_traits<float>::size;
  int padded = std::max({2, m, 20 - rows - k});
  padded = (padded + kPacket - 1) / kPacket * kPacket;
#ifdef _OPENMP
  const bool outer = !omp_in_parallel();
#else
  const bool outer = false;
#endif
  const int threads = outer ? Eigen::nbThreads() : 0;
  if (outer) Eigen::setNbThreads(1);
  if (padded == m) {
    OutMap(y, m, rows, Eigen::OuterStride<>(ldy)).noalias() = ConstMap(x, m, k) * ConstMap(w, rows, k).transpose();
  } else {
    RowMajor xp = RowMajor::Zero(padded, k);
    xp.topRows(m) = ConstMap(x, m, k);
    const RowMajor yp = xp * ConstMap(w, rows, k).transpose();
    OutMap(y, m, rows, Eigen::OuterStride<>(ldy)) = yp.topRows(m);
  }
  if (outer) Eigen::setNbThreads(threads);
}

void to_bf16(const float* x, std::size_t n, std::uint16_t* out) {
  for (std::size_t i = 0; i < n; ++i) out[i] = float_to_bf16(x[i]);
}

}  // namespace

struct PackedWeight::Packed {
  dnnl::memory::desc md;
  dnnl::memory mem;
};

bool cpu_has_native_bf16() {
  static const bool native = [] {
    const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
    return isa == dnnl::cpu_isa::avx512_core_bf16 || isa == dnnl::cpu_isa::avx512_core_amx;
  }();
  return native;
}

namespace {
std::size_t plain_bytes(int n, int k, WeightType type) {
  return static_cast<std::size_t>(n) * k * (type == WeightType::F32 ? sizeof(float) : sizeof(std::uint16_t));
}
dnnl::memory::desc packed_desc(int n, int k, WeightType type) {
  const dnnl::memory::desc any({k, n}, dnnl_type(type), tag::any);
  return make_pd(1, k, n, type, any).weights_desc();
}
}  // namespace

void PackedWeight::Free::operator()(std::byte* p) const { std::free(p); }

std::byte* PackedWeight::allocate(std::size_t bytes) {
  void* p = std::aligned_alloc(64, std::max<std::size_t>(64, (bytes + 63) / 64 * 64));
  if (!p) throw std::bad_alloc();
  owned_.reset(static_cast<std::byte*>(p));
  data_ = owned_.get();
  bytes_ = bytes;
  return owned_.get();
}

std::size_t PackedWeight::image_bytes(int n, int k, WeightType type, bool packed) {
  if (!packed || static_cast<std::size_t>(n) * k == 0) return plain_bytes(n, k, type);
  return packed_desc(n, k, type).get_size();
}

PackedWeight::PackedWeight(const TensorView& view, int n, int k, WeightType type, bool packed)
    : n_(n), k_(k), type_(type) {
  MOETRACE_ASSERT(static_cast<std::int64_t>(n) * k == view.numel(), "PackedWeight: shape does not match the tensor");
  const std::size_t count = static_cast<std::size_t>(n) * k;
  if (!packed || count == 0) {
    std::byte* out = allocate(plain_bytes(n, k, type));
    if (type == WeightType::F32) {
      view.to_float(reinterpret_cast<float*>(out));
    } else if (view.dtype == DType::BF16) {
      if (count) std::memcpy(out, view.data, 2 * count);
    } else {
      const std::vector<float> f = view.to_float();
      to_bf16(f.data(), count, reinterpret_cast<std::uint16_t*>(out));
    }
    return;
  }
  // Reorder the checkpoint's W [n, k] (row-major, i.e. the matmul's K x N weights in format `ba`)
  // straight from the mapped file into the packed layout; float16 goes through a float32 copy.
  std::vector<float> widened;
  dt src_type = view.dtype == DType::BF16 ? dt::bf16 : dt::f32;
  const void* src = view.data;
  if (view.dtype == DType::F16) {
    widened = view.to_float();
    src = widened.data();
  }
  packed_ = std::make_unique<Packed>();
  packed_->md = packed_desc(n, k, type);
  packed_->mem = dnnl::memory(packed_->md, engine(), allocate(packed_->md.get_size()));
  dnnl::memory user(dnnl::memory::desc({k, n}, src_type, tag::ba), engine(), const_cast<void*>(src));
  dnnl::stream s(engine());
  dnnl::reorder(user, packed_->mem).execute(s, user, packed_->mem);
  s.wait();
}

PackedWeight::PackedWeight(const std::byte* image, std::size_t bytes, int n, int k, WeightType type, bool packed,
                           const std::string& origin)
    : n_(n), k_(k), type_(type), data_(image), bytes_(bytes) {
  const std::size_t want = image_bytes(n, k, type, packed);
  if (bytes != want)
    fail_input("{}: the weight has {} bytes where this backend needs {} for [{}, {}] (a store of another layout: "
               "remove it)", origin, bytes, want, n, k);
  if (!packed || static_cast<std::size_t>(n) * k == 0) return;
  packed_ = std::make_unique<Packed>();
  packed_->md = packed_desc(n, k, type);
  // oneDNN only reads a matmul's weights: the read-only mapping is used as it is.
  packed_->mem = dnnl::memory(packed_->md, engine(), const_cast<std::byte*>(image));
}

PackedWeight::~PackedWeight() = default;

void PackedWeight::row(int r, float* out) const {
  MOETRACE_ASSERT(!packed_ && r >= 0 && r < n_, "row access needs a plain weight and a row in range");
  const std::size_t base = static_cast<std::size_t>(r) * k_;
  if (type_ == WeightType::F32)
    std::memcpy(out, f32_data() + base, sizeof(float) * k_);
  else
    for (int c = 0; c < k_; ++c) out[c] = bf16_to_float(bf16_data()[base + c]);
}

float PackedWeight::dot_row(const float* x, int r) const {
  MOETRACE_ASSERT(!packed_ && r >= 0 && r < n_, "row access needs a plain weight and a row in range");
  const std::size_t base = static_cast<std::size_t>(r) * k_;
  if (type_ == WeightType::F32)
    return Eigen::Map<const Eigen::VectorXf>(x, k_).dot(Eigen::Map<const Eigen::VectorXf>(f32_data() + base, k_));
  float s = 0;
  for (int c = 0; c < k_; ++c) s += x[c] * bf16_to_float(bf16_data()[base + c]);
  return s;
}

void matmul(const float* x, int m, const PackedWeight& w, float* y) {
  const int k = w.k_, n = w.n_;
  if (m == 0 || n == 0) return;
  if (k == 0) {
    std::fill(y, y + static_cast<std::size_t>(m) * n, 0.0f);
    return;
  }
  const std::size_t xs = static_cast<std::size_t>(m) * k;
  if (w.packed_) {
    const void* src = x;
    if (w.type_ == WeightType::BF16) {
      std::uint16_t* xb = workspace(tls_x_bf16, xs);
      to_bf16(x, xs, xb);
      src = xb;
    }
    const std::shared_ptr<const Primitive> prim = primitive(m, k, n, w.type_, w.packed_->md);
    const Primitive& p = *prim;
    const auto& e = engine();
    dnnl::memory src_mem({{m, k}, dnnl_type(w.type_), tag::ab}, e, const_cast<void*>(src));
    dnnl::memory dst_mem({{m, n}, dt::f32, tag::ab}, e, y);
    std::unordered_map<int, dnnl::memory> args = {
        {DNNL_ARG_SRC, src_mem}, {DNNL_ARG_WEIGHTS, w.packed_->mem}, {DNNL_ARG_DST, dst_mem}};
    if (p.scratch_bytes)
      args.emplace(DNNL_ARG_SCRATCHPAD,
                   dnnl::memory({{static_cast<dnnl::memory::dim>(p.scratch_bytes)}, dt::u8, tag::a}, e,
                                workspace(tls_scratch, p.scratch_bytes / sizeof(float) + 1)));
    thread_local dnnl::stream stream(engine());
    p.prim.execute(stream, args);
    stream.wait();
    return;
  }
  if (w.type_ == WeightType::F32) {
    row_independent_block(x, m, k, w.f32_data(), n, y, n);
    return;
  }
  // Portable bf16 fallback: bf16-rounded x times bf16 weights widened block by block, float32 sums.
  float* xr = workspace(tls_x_f32, xs);
  for (std::size_t i = 0; i < xs; ++i) xr[i] = bf16_to_float(float_to_bf16(x[i]));
  constexpr int kBlock = 256;
  float* wb = workspace(tls_w_block, static_cast<std::size_t>(kBlock) * k);
  for (int r0 = 0; r0 < n; r0 += kBlock) {
    const int rows = std::min(kBlock, n - r0);
    const std::uint16_t* src = w.bf16_data() + static_cast<std::size_t>(r0) * k;
    for (std::size_t i = 0; i < static_cast<std::size_t>(rows) * k; ++i) wb[i] = bf16_to_float(src[i]);
    row_independent_block(xr, m, k, wb, rows, y + r0, n);
  }
}

}  // namespace moetrace::cpu
