// moetrace::Backend on one NVIDIA GPU. Design (docs/cuda.md):
//  - one CUDA stream for everything; the host waits only in download(), select_logits() and
//    row_distances();
//  - activations live in a host-managed caching pool (size classes, no cudaMalloc or cudaFree in the
//    steady state). A block freed on the host may be reused at once: all device work is ordered on
//    the one stream, so later work that reuses it runs after earlier work that used it;
//  - contiguous row selections are views and concatenations are lazy (copy-on-write blocks): the
//    engine's per-stream K/V assembly (recorded prefix + own rows) costs no device work at all, and
//    attention reads a context in up to two pieces; any other consumer materialises a concatenation
//    with one batched-copy launch;
//  - index lists (rows, positions, expert groups) go up through a pinned staging ring, packed so
//    that each op makes one host-to-device copy;
//  - products: cublasSgemm (F32: no TF32, for conformance) or cublasGemmEx with bf16 operands and
//    float32 accumulation (BF16); experts as grouped GEMMs (cublasGemmGroupedBatchedEx), one call
//    for gate+up and one for down per layer.
#include "kernels/cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <unordered_map>

#include "kernels/cuda_check.h"
#include "kernels/host_plan.h"
#include "kernels/kernels.h"
#include "util/error.h"

namespace moetrace {
namespace {

using kernels::ElemType;

std::size_t elem_size(ElemType t) { return t == ElemType::F32 ? 4 : 2; }

ElemType elem_of(DType d) {
  switch (d) {
    case DType::BF16: return ElemType::BF16;
    case DType::F16: return ElemType::F16;
    case DType::F32: return ElemType::F32;
  }
  return ElemType::F32;
}

// ---- device memory pool -------------------------------------------------------------------------

class DevicePool {
 public:
  ~DevicePool() {
    for (auto& [size, list] : free_)
      for (void* p : list) cudaFree(p);
  }

  static std::size_t round(std::size_t bytes) {
    std::size_t s = std::max<std::size_t>(bytes, 256);
    std::size_t p = 1;
    while (p * 2 <= s) p *= 2;
    const std::size_t step = std::max<std::size_t>(p / 4, 256);
    return (s + step - 1) / step * step;
  }

  void* allocate(std::size_t rounded) {
    auto it = free_.find(rounded);
    void* p = nullptr;
    if (it != free_.end() && !it->second.empty()) {
      p = it->second.back();
      it->second.pop_back();
      cached_ -= rounded;
    } else {
      cudaError_t e = cudaMalloc(&p, rounded);
      if (e != cudaSuccess) {
        (void)cudaGetLastError();
        trim();  // give the cached blocks back and try once more
        e = cudaMalloc(&p, rounded);
      }
      if (e != cudaSuccess) {
        (void)cudaGetLastError();
        std::size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        fail_internal(__FILE__, __LINE__,
                      "out of GPU memory: asked for " + std::to_string(rounded) + " bytes with " +
                          std::to_string(in_use_) + " bytes of activations in use and " + std::to_string(free_b) +
                          " of " + std::to_string(total_b) + " bytes free on the device (lower the batch rows)");
      }
    }
    in_use_ += rounded;
    peak_ = std::max(peak_, in_use_);
    return p;
  }

  void release(void* p, std::size_t rounded) {
    in_use_ -= rounded;
    cached_ += rounded;
    free_[rounded].push_back(p);
  }

  void trim() {
    cudaDeviceSynchronize();
    for (auto& [size, list] : free_) {
      for (void* p : list) cudaFree(p);
      list.clear();
    }
    cached_ = 0;
  }

  std::size_t peak() const { return peak_; }

 private:
  std::unordered_map<std::size_t, std::vector<void*>> free_;
  std::size_t in_use_ = 0, peak_ = 0, cached_ = 0;
};

struct DeviceBlock {
  DeviceBlock(std::shared_ptr<DevicePool> pool, std::size_t bytes)
      : pool(std::move(pool)), bytes(DevicePool::round(bytes)), ptr(this->pool->allocate(this->bytes)) {}
  ~DeviceBlock() { pool->release(ptr, bytes); }
  DeviceBlock(const DeviceBlock&) = delete;
  DeviceBlock& operator=(const DeviceBlock&) = delete;
  std::shared_ptr<DevicePool> pool;
  std::size_t bytes;
  void* ptr;
};
using BlockPtr = std::shared_ptr<DeviceBlock>;

// ---- pinned staging ring for small host-to-device copies ------------------------------------------

class StagingRing {
 public:
  explicit StagingRing(std::size_t half_bytes) : half_(half_bytes) {
    MOETRACE_CUDA_CHECK(cudaMallocHost(&base_, 2 * half_));
    for (auto& e : events_) MOETRACE_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  }
  ~StagingRing() {
    for (auto& e : events_) cudaEventDestroy(e);
    cudaFreeHost(base_);
  }
  std::size_t capacity() const { return half_; }
  // Pinned copy of `bytes` that stays untouched until the work enqueued before the next switch of
  // halves has run.
  void* stage(const void* data, std::size_t bytes, cudaStream_t stream) {
    const std::size_t need = (bytes + 15) / 16 * 16;
    if (offset_ + need > half_) {
      MOETRACE_CUDA_CHECK(cudaEventRecord(events_[cur_], stream));
      cur_ ^= 1;
      MOETRACE_CUDA_CHECK(cudaEventSynchronize(events_[cur_]));
      offset_ = 0;
    }
    char* p = static_cast<char*>(base_) + cur_ * half_ + offset_;
    std::memcpy(p, data, bytes);
    offset_ += need;
    return p;
  }

 private:
  std::size_t half_;
  void* base_ = nullptr;
  cudaEvent_t events_[2]{};
  int cur_ = 0;
  std::size_t offset_ = 0;
};

// Several host arrays packed into one upload, each 16-byte aligned.
class MetaPack {
 public:
  template <typename T>
  std::size_t add(const T* data, std::size_t n) {
    const std::size_t at = (bytes_.size() + 15) / 16 * 16;
    bytes_.resize(at + n * sizeof(T));
    if (n) std::memcpy(bytes_.data() + at, data, n * sizeof(T));
    return at;
  }
  template <typename T>
  std::size_t add(const std::vector<T>& v) {
    return add(v.data(), v.size());
  }
  const std::vector<char>& bytes() const { return bytes_; }

 private:
  std::vector<char> bytes_;
};

// ---- tensors and weights ----------------------------------------------------------------------

struct Chunk {
  BlockPtr block;
  const float* data;
  int rows;
};

class CudaTensor final : public Tensor {
 public:
  CudaTensor(int rows, int cols) : Tensor(rows, cols) {}
  void set_rows(int rows) { rows_ = rows; }
  // Dense: `data` points into `block` (at a row offset for views). Composite (a lazy concatenation):
  // `chunks` non-empty, `data` null until materialised.
  mutable BlockPtr block;
  mutable float* data = nullptr;
  mutable std::vector<Chunk> chunks;
  mutable BlockPtr bf16;  // cached bf16 copy of the dense data (BF16 mode products)
};

class CudaWeight final : public Weight {
 public:
  CudaWeight(int rows, int cols, ElemType type) : Weight(rows, cols), type(type) {}
  ~CudaWeight() override {
    if (data) cudaFree(data);
  }
  ElemType type;
  void* data = nullptr;
  std::size_t bytes() const { return static_cast<std::size_t>(rows()) * cols() * elem_size(type); }
};

CudaTensor& cu(Tensor& t) { return static_cast<CudaTensor&>(t); }
const CudaTensor& cu(const Tensor& t) { return static_cast<const CudaTensor&>(t); }
const CudaWeight& cu(const Weight& w) { return static_cast<const CudaWeight&>(w); }

bool is_router(const std::string& name) {
  const std::string suffix = ".gate.weight";
  return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// ---- routing results ----------------------------------------------------------------------------

// A layer's routing in device memory (kernels/routing.cu); host() downloads it and reports the
// errors the kernel recorded.
class CudaRoutingResult final : public RoutingResult {
 public:
  CudaRoutingResult(int rows, int k, int E, int layer, cudaStream_t stream, const std::shared_ptr<DevicePool>& pool)
      : RoutingResult(rows, k, E),
        layer(layer),
        stream(stream),
        experts(std::make_shared<DeviceBlock>(pool, sizeof(int) * static_cast<std::size_t>(rows) * k)),
        weights(std::make_shared<DeviceBlock>(pool, sizeof(float) * static_cast<std::size_t>(rows) * k)),
        offsets(std::make_shared<DeviceBlock>(pool, sizeof(int) * static_cast<std::size_t>(E + 1))),
        counts(std::make_shared<DeviceBlock>(pool, sizeof(int) * static_cast<std::size_t>(E))),
        slots(std::make_shared<DeviceBlock>(pool, sizeof(int) * static_cast<std::size_t>(rows) * k)),
        status(std::make_shared<DeviceBlock>(pool, sizeof(int))) {}

  int layer;
  cudaStream_t stream;
  BlockPtr experts, weights, offsets, counts, slots, status;

 protected:
  void fetch(RoutingTable& t) const override {
    const std::size_t n = static_cast<std::size_t>(rows()) * k();
    int code = INT_MAX;
    t.top.k = k();
    t.top.experts.resize(n);
    t.top.weights.resize(n);
    t.expert_offsets.resize(num_experts() + 1);
    t.expert_slots.resize(n);
    MOETRACE_CUDA_CHECK(cudaMemcpyAsync(&code, status->ptr, sizeof(int), cudaMemcpyDeviceToHost, stream));
    if (n) {
      MOETRACE_CUDA_CHECK(cudaMemcpyAsync(t.top.experts.data(), experts->ptr, n * sizeof(int), cudaMemcpyDeviceToHost, stream));
      MOETRACE_CUDA_CHECK(cudaMemcpyAsync(t.top.weights.data(), weights->ptr, n * sizeof(float), cudaMemcpyDeviceToHost, stream));
      MOETRACE_CUDA_CHECK(cudaMemcpyAsync(t.expert_slots.data(), slots->ptr, n * sizeof(int), cudaMemcpyDeviceToHost, stream));
    }
    MOETRACE_CUDA_CHECK(cudaMemcpyAsync(t.expert_offsets.data(), offsets->ptr, t.expert_offsets.size() * sizeof(int),
                                        cudaMemcpyDeviceToHost, stream));
    MOETRACE_CUDA_CHECK(cudaStreamSynchronize(stream));
    if (code == INT_MAX) return;
    const int row = code / 4;
    if (code % 4 == kernels::kRouteNonFinite)
      fail_input("non-finite router logit at layer {}, row {} (weights or input contain NaN/Inf)", layer, row);
    fail_input("fewer than k = {} experts remain after deactivation at layer {}, row {}", k(), layer, row);
  }
};

// ---- the backend ------------------------------------------------------------------------------

// ---- grouped expert products (run_experts) -------------------------------------------------------

// Per-group offsets into the gate/up buffers (gate rows x group rows each), checking that all experts share
// one precision and consistent shapes; experts may differ in width (they never do in the supported models).
std::vector<long long> expert_offsets(const std::vector<ExpertTask>& tasks, const cuda_plan::ExpertPlan& plan, int H,
                                      ElemType wt) {
  const int G = plan.groups();
  std::vector<long long> gu_off(G + 1, 0);
  for (int g = 0; g < G; ++g) {
    const ExpertTask& t = tasks[plan.task_of_group[g]];
    MOETRACE_ASSERT(cu(*t.gate).type == wt && cu(*t.up).type == wt && cu(*t.down).type == wt,
                    "run_experts: experts stored in different precisions");
    MOETRACE_ASSERT(t.gate->cols() == H && t.up->cols() == H && t.down->rows() == H &&
                        t.up->rows() == t.gate->rows() && t.down->cols() == t.gate->rows(),
                    "run_experts: expert shapes");
    gu_off[g + 1] = gu_off[g] + static_cast<long long>(plan.offsets[g + 1] - plan.offsets[g]) * t.gate->rows();
  }
  return gu_off;
}

// The grouped products' pointer arrays: (a1, b1, c1) gate and up of each group (2 problems a group),
// (a2, b2, c2) down of each group.
struct ExpertOperands {
  std::vector<const void*> a1, b1, a2, b2;
  std::vector<void*> c1, c2;
};

ExpertOperands expert_operands(const std::vector<ExpertTask>& tasks, const cuda_plan::ExpertPlan& plan,
                               const std::vector<long long>& gu_off, int H, std::size_t es, const void* xg, void* gbuf,
                               void* ubuf, const void* hbuf, void* ybuf) {
  ExpertOperands o;
  for (int g = 0; g < plan.groups(); ++g) {
    const ExpertTask& t = tasks[plan.task_of_group[g]];
    const char* xrow = static_cast<const char*>(xg) + static_cast<std::size_t>(plan.offsets[g]) * H * es;
    o.a1.push_back(cu(*t.gate).data);
    o.a1.push_back(cu(*t.up).data);
    o.b1.push_back(xrow);
    o.b1.push_back(xrow);
    o.c1.push_back(static_cast<float*>(gbuf) + gu_off[g]);
    o.c1.push_back(static_cast<float*>(ubuf) + gu_off[g]);
    o.a2.push_back(cu(*t.down).data);
    o.b2.push_back(static_cast<const char*>(hbuf) + gu_off[g] * es);
    o.c2.push_back(static_cast<float*>(ybuf) + static_cast<std::size_t>(plan.offsets[g]) * H);
  }
  return o;
}

// The grouped products' shapes: gate and up [I, H] x [m_g, H]^T (2 problems a group), down [H, I] x [m_g, I]^T.
struct ExpertProducts {
  std::vector<int> m1, n1, k1, m2, n2, k2, size1, size2;
};

ExpertProducts expert_products(const std::vector<ExpertTask>& tasks, const cuda_plan::ExpertPlan& plan, int H) {
  ExpertProducts p;
  for (int g = 0; g < plan.groups(); ++g) {
    const ExpertTask& t = tasks[plan.task_of_group[g]];
    const int I = t.gate->rows(), mg = plan.offsets[g + 1] - plan.offsets[g];
    p.m1.push_back(I), p.n1.push_back(mg), p.k1.push_back(H), p.size1.push_back(2);
    p.m2.push_back(H), p.n2.push_back(mg), p.k2.push_back(I), p.size2.push_back(1);
  }
  return p;
}

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(const CudaBackendOptions& o) : opt_(o) {
    MOETRACE_CUDA_CHECK(cudaSetDevice(o.device));
    MOETRACE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    MOETRACE_CUBLAS_CHECK(cublasCreate(&blas_));
    MOETRACE_CUBLAS_CHECK(cublasSetStream(blas_, stream_));
    // F32: true float32 products (no TF32), the conformance mode.
    MOETRACE_CUBLAS_CHECK(cublasSetMathMode(blas_, CUBLAS_DEFAULT_MATH));
    pool_ = std::make_shared<DevicePool>();
    ring_ = std::make_unique<StagingRing>(8u << 20);
    MOETRACE_CUDA_CHECK(cudaMallocHost(&upload_stage_, 2 * kUploadChunk));
    for (auto& e : upload_events_) MOETRACE_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  }

  ~CudaBackend() override {
    cudaStreamSynchronize(stream_);
    for (auto& e : upload_events_) cudaEventDestroy(e);
    cudaFreeHost(upload_stage_);
    ring_.reset();
    cublasDestroy(blas_);
    cudaStreamDestroy(stream_);
    // pool_ lives on while tensors hold blocks.
  }

  std::string name() const override { return opt_.precision == CudaPrecision::BF16 ? "cuda-bf16" : "cuda"; }
  const DevicePool& pool() const { return *pool_; }

  // --- memory ---------------------------------------------------------------------------------

  TensorPtr zeros(int rows, int cols) override {
    auto t = make(rows, cols);
    if (t->data) MOETRACE_CUDA_CHECK(cudaMemsetAsync(t->data, 0, bytes_of(rows, cols), stream_));
    return t;
  }

  TensorPtr upload(const float* host, int rows, int cols) override {
    auto t = make(rows, cols);
    if (t->data) copy_to_device(t->data, host, bytes_of(rows, cols));
    return t;
  }

  void download(const Tensor& t, float* host) override {
    const float* d = read(t);
    if (!d) return;
    MOETRACE_CUDA_CHECK(cudaMemcpyAsync(host, d, bytes_of(t.rows(), t.cols()), cudaMemcpyDeviceToHost, stream_));
    MOETRACE_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  WeightPtr upload_weight(const TensorView& view) override {
    const auto [rows, cols] = weight_matrix_shape(view);
    const ElemType src = elem_of(view.dtype);
    // Norm weights and the router stay float32; BF16 mode stores the rest as bf16.
    ElemType dst = ElemType::F32;
    if (opt_.precision == CudaPrecision::BF16 && view.shape.size() == 2 && !is_router(view.name))
      dst = ElemType::BF16;
    auto w = std::make_unique<CudaWeight>(rows, cols, dst);
    const std::size_t n = static_cast<std::size_t>(rows) * cols;
    if (n == 0) return w;
    MOETRACE_CUDA_CHECK(cudaMalloc(&w->data, w->bytes()));
    if (src == dst) {
      copy_to_device(w->data, view.data, w->bytes());
    } else {  // raw bytes up, converted on the device
      DeviceBlock raw(pool_, n * elem_size(src));
      copy_to_device(raw.ptr, view.data, n * elem_size(src));
      kernels::convert(raw.ptr, src, w->data, dst, n, stream_);
      MOETRACE_CUDA_CHECK(cudaStreamSynchronize(stream_));
    }
    weight_bytes_ += w->bytes();
    return w;
  }

  std::size_t weight_bytes() const override { return weight_bytes_; }

  // --- data movement --------------------------------------------------------------------------

  TensorPtr embed(const Weight& table, const std::vector<int>& ids) override {
    const CudaWeight& w = cu(table);
    for (int id : ids) MOETRACE_ASSERT(id >= 0 && id < w.rows(), "token id out of range");
    auto out = make(static_cast<int>(ids.size()), w.cols());
    if (!out->data) return out;
    BlockPtr d = upload_meta(ids.data(), ids.size() * sizeof(int));
    kernels::embed(w.data, w.type, static_cast<const int*>(d->ptr), out->data, out->rows(), out->cols(), stream_);
    return out;
  }

  TensorPtr gather_rows(const Tensor& src, const std::vector<int>& rows) override {
    const int n = static_cast<int>(rows.size());
    for (int r : rows) MOETRACE_ASSERT(r >= 0 && r < src.rows(), "gather_rows: row out of range");
    if (n == 0 || src.cols() == 0) return make(n, src.cols());
    const float* s = read(src);
    if (cuda_plan::is_contiguous_range(rows)) {  // a view: shares the block, copy-on-write
      auto v = std::make_unique<CudaTensor>(n, src.cols());
      v->block = cu(src).block;
      v->data = const_cast<float*>(s) + static_cast<std::ptrdiff_t>(rows[0]) * src.cols();
      return v;
    }
    auto out = make(n, src.cols());
    BlockPtr d = upload_meta(rows.data(), rows.size() * sizeof(int));
    kernels::gather_rows(s, static_cast<const int*>(d->ptr), out->data, n, src.cols(), stream_);
    return out;
  }

  void copy_rows(const Tensor& src, const std::vector<int>& src_rows, Tensor& dst,
                 const std::vector<int>& dst_rows) override {
    MOETRACE_ASSERT(src_rows.size() == dst_rows.size(), "row lists differ in length");
    MOETRACE_ASSERT(src.cols() == dst.cols(), "copy_rows: widths differ");
    if (src_rows.empty()) return;
    check_rows(src_rows, src.rows(), "copy_rows");
    check_rows(dst_rows, dst.rows(), "copy_rows");
    const float* s = read(src);
    float* d = write(dst);
    MetaPack pack;
    const std::size_t a = pack.add(src_rows), b = pack.add(dst_rows);
    BlockPtr m = upload_pack(pack);
    kernels::copy_rows(s, at<int>(m, a), d, at<int>(m, b), static_cast<int>(src_rows.size()), dst.cols(),
                       cuda_plan::has_duplicates(dst_rows), stream_);
  }

  void add_rows(const Tensor& src, const std::vector<int>& src_rows, Tensor& dst, const std::vector<int>& dst_rows,
                float scale) override {
    MOETRACE_ASSERT(src_rows.size() == dst_rows.size(), "row lists differ in length");
    MOETRACE_ASSERT(src.cols() == dst.cols(), "add_rows: widths differ");
    if (src_rows.empty()) return;
    check_rows(src_rows, src.rows(), "add_rows");
    check_rows(dst_rows, dst.rows(), "add_rows");
    const float* s = read(src);
    float* d = write(dst);
    MetaPack pack;
    const std::size_t a = pack.add(src_rows), b = pack.add(dst_rows);
    BlockPtr m = upload_pack(pack);
    kernels::add_rows(s, at<int>(m, a), d, at<int>(m, b), static_cast<int>(src_rows.size()), dst.cols(), scale,
                      cuda_plan::has_duplicates(dst_rows), stream_);
  }

  TensorPtr concat_rows(const std::vector<const Tensor*>& parts) override {
    int rows = 0;
    const int cols = parts.empty() ? 0 : parts.front()->cols();
    auto out = std::make_unique<CudaTensor>(0, cols);
    for (const Tensor* p : parts) {
      MOETRACE_ASSERT(p->cols() == cols, "concatenated tensors differ in width");
      rows += p->rows();
      if (p->rows() == 0 || cols == 0) continue;
      const CudaTensor& c = cu(*p);
      if (!c.chunks.empty()) out->chunks.insert(out->chunks.end(), c.chunks.begin(), c.chunks.end());
      else out->chunks.push_back({c.block, c.data, c.rows()});
    }
    out->set_rows(rows);
    if (out->chunks.size() == 1) {  // a single piece is a view
      out->block = out->chunks[0].block;
      out->data = const_cast<float*>(out->chunks[0].data);
      out->chunks.clear();
    }
    return out;
  }

  void add(Tensor& dst, const Tensor& src) override {
    MOETRACE_ASSERT(dst.rows() == src.rows() && dst.cols() == src.cols(), "shape mismatch in add");
    if (dst.rows() == 0 || dst.cols() == 0) return;
    const float* s = read(src);
    kernels::add(write(dst), s, static_cast<std::size_t>(dst.rows()) * dst.cols(), stream_);
  }

  // --- math -----------------------------------------------------------------------------------

  TensorPtr linear(const Tensor& x, const Weight& weight) override {
    const CudaWeight& w = cu(weight);
    MOETRACE_ASSERT(x.cols() == w.cols(), "linear: input width does not match the weight");
    auto out = make(x.rows(), w.rows());
    if (x.rows() == 0 || w.rows() == 0) return out;
    const int n = x.rows(), in = w.cols(), o = w.rows();
    const float one = 1.f, zero = 0.f;
    if (w.type == ElemType::F32) {
      MOETRACE_CUBLAS_CHECK(cublasSgemm(blas_, CUBLAS_OP_T, CUBLAS_OP_N, o, n, in, &one,
                                        static_cast<const float*>(w.data), in, read(x), in, &zero, out->data, o));
    } else {
      const void* xb = read_bf16(x);
      MOETRACE_CUBLAS_CHECK(cublasGemmEx(blas_, CUBLAS_OP_T, CUBLAS_OP_N, o, n, in, &one, w.data, CUDA_R_16BF, in, xb,
                                         CUDA_R_16BF, in, &zero, out->data, CUDA_R_32F, o, CUBLAS_COMPUTE_32F,
                                         CUBLAS_GEMM_DEFAULT));
    }
    return out;
  }

  TensorPtr rms_norm(const Tensor& x, const Weight& weight, int group, float eps) override {
    const CudaWeight& w = cu(weight);
    MOETRACE_ASSERT(w.cols() == group && group > 0 && x.cols() % group == 0, "rms_norm: bad group size");
    MOETRACE_ASSERT(w.type == ElemType::F32, "rms_norm: norm weights are stored as float32");
    auto out = make(x.rows(), x.cols());
    if (!out->data) return out;
    kernels::rms_norm(read(x), out->data, static_cast<const float*>(w.data), x.rows(), x.cols(), group, eps, stream_);
    return out;
  }

  void rope(Tensor& x, const std::vector<int>& positions, int head_dim, double theta) override {
    MOETRACE_ASSERT(static_cast<int>(positions.size()) == x.rows(), "rope: one position per row");
    MOETRACE_ASSERT(head_dim > 0 && head_dim % 2 == 0 && x.cols() % head_dim == 0, "rope: bad head_dim");
    if (x.rows() == 0) return;
    // q and k of a layer share their positions: upload once.
    if (positions != last_positions_ || !positions_dev_) {
      positions_dev_ = upload_meta(positions.data(), positions.size() * sizeof(int));
      last_positions_ = positions;
    }
    kernels::rope(write(x), static_cast<const int*>(positions_dev_->ptr), x.rows(), x.cols(), head_dim, theta, stream_);
  }

  TensorPtr attention(const Tensor& q, const std::vector<AttentionSegment>& segments,
                      const AttentionShape& shape) override {
    const int hd = shape.head_dim;
    MOETRACE_ASSERT(shape.num_kv_heads > 0 && shape.num_heads % shape.num_kv_heads == 0, "attention: bad head counts");
    MOETRACE_ASSERT(q.cols() == shape.num_heads * hd, "attention: query width");
    auto out = make(q.rows(), shape.num_heads * hd);  // rows outside every segment stay 0, as on the CPU
    if (!out->data) return out;
    MOETRACE_CUDA_CHECK(cudaMemsetAsync(out->data, 0, bytes_of(out->rows(), out->cols()), stream_));
    const std::vector<cuda_plan::AttentionItem> items = cuda_plan::attention_items(segments, q.rows());
    if (items.empty()) return out;
    const int kv_ld = shape.num_kv_heads * hd;
    std::vector<kernels::AttnSegment> segs(segments.size());
    for (std::size_t i = 0; i < segments.size(); ++i) {
      MOETRACE_ASSERT(segments[i].keys->cols() == kv_ld && segments[i].values->cols() == kv_ld,
                      "attention: key/value width");
      pieces(*segments[i].keys, segs[i].k0, segs[i].k1, segs[i].k_rows0);
      pieces(*segments[i].values, segs[i].v0, segs[i].v1, segs[i].v_rows0);
    }
    MetaPack pack;
    static_assert(sizeof(cuda_plan::AttentionItem) == sizeof(kernels::AttnRow));
    const std::size_t a = pack.add(segs), b = pack.add(items);
    BlockPtr m = upload_pack(pack);
    const float* qd = read(q);
    kernels::attention(qd, out->data, at<kernels::AttnRow>(m, b), at<kernels::AttnSegment>(m, a),
                       static_cast<int>(items.size()), shape.num_heads, shape.num_kv_heads, hd, kv_ld,
                       1.0f / std::sqrt(static_cast<float>(hd)), stream_);
    return out;
  }

  void run_experts(const Tensor& x, const std::vector<ExpertTask>& tasks, Tensor& out) override {
    const cuda_plan::ExpertPlan plan = cuda_plan::plan_experts(tasks, x.rows(), out.rows());
    const int M = plan.total_rows(), G = plan.groups(), H = x.cols();
    if (M == 0) return;
    MOETRACE_ASSERT(out.cols() == H, "run_experts: output width");
    const ElemType wt = cu(*tasks[plan.task_of_group[0]].gate).type;
    const ElemType at_t = wt;  // operand type of the products (activations converted to it)
    const std::vector<long long> gu_off = expert_offsets(tasks, plan, H, wt);
    const std::size_t es = elem_size(at_t);
    DeviceBlock xg(pool_, static_cast<std::size_t>(M) * H * es);
    DeviceBlock gbuf(pool_, gu_off[G] * 4), ubuf(pool_, gu_off[G] * 4), hbuf(pool_, gu_off[G] * es);
    DeviceBlock ybuf(pool_, static_cast<std::size_t>(M) * H * 4);

    // One upload: gather/scatter rows, weights and the grouped products' pointer arrays.
    const ExpertOperands ops = expert_operands(tasks, plan, gu_off, H, es, xg.ptr, gbuf.ptr, ubuf.ptr, hbuf.ptr, ybuf.ptr);
    const auto &a1 = ops.a1, &b1 = ops.b1, &a2 = ops.a2, &b2 = ops.b2;
    const auto &c1 = ops.c1, &c2 = ops.c2;
    MetaPack pack;
    const std::size_t o_gather = pack.add(plan.gather_rows), o_scatter = pack.add(plan.scatter_rows),
                      o_w = pack.add(plan.weights), o_a1 = pack.add(a1), o_b1 = pack.add(b1), o_c1 = pack.add(c1),
                      o_a2 = pack.add(a2), o_b2 = pack.add(b2), o_c2 = pack.add(c2);
    BlockPtr m = upload_pack(pack);

    kernels::gather_rows_as(read(x), at<int>(m, o_gather), xg.ptr, at_t, M, H, stream_);

    // gate and up: [I, H] x [m_g, H]^T per group, one grouped call (group g has 2 problems).
    const ExpertProducts p = expert_products(tasks, plan, H);
    grouped_gemm(p.m1, p.n1, p.k1, p.size1, at<const void*>(m, o_a1), at<const void*>(m, o_b1), at<void*>(m, o_c1),
                 at_t, a1, b1, c1);
    kernels::silu_mul(static_cast<const float*>(gbuf.ptr), static_cast<const float*>(ubuf.ptr), hbuf.ptr, at_t,
                      static_cast<std::size_t>(gu_off[G]), stream_);
    grouped_gemm(p.m2, p.n2, p.k2, p.size2, at<const void*>(m, o_a2), at<const void*>(m, o_b2), at<void*>(m, o_c2), at_t, a2,
                 b2, c2);
    kernels::scatter_weighted(static_cast<const float*>(ybuf.ptr), at<int>(m, o_scatter), at<float>(m, o_w),
                              write(out), M, H, stream_);
  }

  // Routing stays on the device; run_routed_experts (Backend's default) reads the host copy, since
  // the grouped products need the per-expert row counts on the host.
  RoutingPtr route(const Tensor& logits, const RouteRequest& q) override {
    const int N = logits.rows(), E = logits.cols(), k = q.k;
    MOETRACE_ASSERT(E > 0 && k >= 1 && k <= E && k <= 32, "route: k outside [1, min(num_experts, 32)]");
    const bool masked = !q.mask_offsets.empty();
    if (masked) {
      MOETRACE_ASSERT(static_cast<int>(q.mask_offsets.size()) == N + 1 && q.mask_offsets.front() == 0 &&
                          q.mask_offsets.back() == static_cast<int>(q.mask_experts.size()),
                      "route: mask offsets per row");
      for (int e : q.mask_experts) MOETRACE_ASSERT(e >= 0 && e < E, "route: masked expert out of range");
    }
    auto r = std::make_unique<CudaRoutingResult>(N, k, E, q.layer, stream_, pool_);
    const int none = INT_MAX;
    MOETRACE_CUDA_CHECK(cudaMemcpyAsync(r->status->ptr, ring_->stage(&none, sizeof none, stream_), sizeof none,
                                        cudaMemcpyHostToDevice, stream_));
    BlockPtr m;
    std::size_t o_off = 0, o_ex = 0;
    if (masked) {
      MetaPack pack;
      o_off = pack.add(q.mask_offsets);
      o_ex = pack.add(q.mask_experts);
      m = upload_pack(pack);
    }
    kernels::route_top_k(N ? read(logits) : nullptr, N, E, k, q.renormalise, masked ? at<int>(m, o_off) : nullptr,
                         masked && !q.mask_experts.empty() ? at<int>(m, o_ex) : nullptr,
                         static_cast<int*>(r->experts->ptr), static_cast<float*>(r->weights->ptr),
                         static_cast<int*>(r->status->ptr), stream_);
    kernels::group_by_expert(static_cast<const int*>(r->experts->ptr), N * k, E, static_cast<int*>(r->counts->ptr),
                             static_cast<int*>(r->offsets->ptr), static_cast<int*>(r->slots->ptr), stream_);
    return r;
  }

  TensorPtr sum_slots(const Tensor& slots, int k) override {
    MOETRACE_ASSERT(k > 0 && slots.rows() % k == 0, "sum_slots: rows not a multiple of k");
    auto out = make(slots.rows() / k, slots.cols());
    if (!out->data) return out;
    kernels::sum_slots(read(slots), out->data, out->rows(), k, slots.cols(), stream_);
    return out;
  }

  std::vector<float> select_logits(const Tensor& x, const Weight& table, const std::vector<int>& ids,
                                   int per_row) override {
    const CudaWeight& w = cu(table);
    MOETRACE_ASSERT(static_cast<int>(ids.size()) == x.rows() * per_row, "select_logits: ids per row");
    MOETRACE_ASSERT(x.cols() == w.cols(), "select_logits: width");
    for (int id : ids) MOETRACE_ASSERT(id >= 0 && id < w.rows(), "select_logits: id out of range");
    std::vector<float> host(ids.size());
    if (ids.empty()) return host;
    BlockPtr d = upload_meta(ids.data(), ids.size() * sizeof(int));
    DeviceBlock res(pool_, ids.size() * sizeof(float));
    kernels::select_logits(read(x), w.data, w.type, static_cast<const int*>(d->ptr), static_cast<float*>(res.ptr),
                           x.rows(), per_row, x.cols(), stream_);
    MOETRACE_CUDA_CHECK(
        cudaMemcpyAsync(host.data(), res.ptr, ids.size() * sizeof(float), cudaMemcpyDeviceToHost, stream_));
    MOETRACE_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return host;
  }

  std::vector<double> row_distances(const std::vector<RowPair>& pairs) override {
    std::vector<double> host(pairs.size());
    if (pairs.empty()) return host;
    std::vector<kernels::RowDistancePair> rows;
    rows.reserve(pairs.size());
    int cols = -1;
    auto row = [&](const RowRef& r) -> const float* {
      if (!r.tensor) return nullptr;
      MOETRACE_ASSERT(r.row >= 0 && r.row < r.tensor->rows(), "row_distances: row out of range");
      MOETRACE_ASSERT(cols < 0 || r.tensor->cols() == cols, "row_distances: widths differ");
      cols = r.tensor->cols();
      return read(*r.tensor) + static_cast<std::ptrdiff_t>(r.row) * cols;
    };
    for (const RowPair& p : pairs) rows.push_back({row(p.a), row(p.b)});
    if (cols <= 0) return host;  // only rows of zeros
    BlockPtr d = upload_meta(rows.data(), rows.size() * sizeof(kernels::RowDistancePair));
    DeviceBlock res(pool_, pairs.size() * sizeof(double));
    kernels::row_distances(static_cast<const kernels::RowDistancePair*>(d->ptr), static_cast<int>(rows.size()), cols,
                           static_cast<double*>(res.ptr), stream_);
    MOETRACE_CUDA_CHECK(
        cudaMemcpyAsync(host.data(), res.ptr, pairs.size() * sizeof(double), cudaMemcpyDeviceToHost, stream_));
    MOETRACE_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return host;
  }

  // Dense, exclusively owned device data (copy-on-write), for in-place writers.
  float* write(Tensor& t) {
    CudaTensor& c = cu(t);
    read(t);
    if (!c.data) return nullptr;
    c.bf16.reset();
    if (c.block.use_count() == 1) return c.data;
    BlockPtr fresh = std::make_shared<DeviceBlock>(pool_, bytes_of(t.rows(), t.cols()));
    MOETRACE_CUDA_CHECK(
        cudaMemcpyAsync(fresh->ptr, c.data, bytes_of(t.rows(), t.cols()), cudaMemcpyDeviceToDevice, stream_));
    c.block = std::move(fresh);
    c.data = static_cast<float*>(c.block->ptr);
    return c.data;
  }

 private:
  static constexpr std::size_t kUploadChunk = 32u << 20;

  static std::size_t bytes_of(int rows, int cols) { return static_cast<std::size_t>(rows) * cols * sizeof(float); }

  template <typename T>
  static T* at(const BlockPtr& b, std::size_t offset) {
    return reinterpret_cast<T*>(static_cast<char*>(b->ptr) + offset);
  }

  static void check_rows(const std::vector<int>& rows, int limit, const char* what) {
    for (int r : rows) MOETRACE_ASSERT(r >= 0 && r < limit, std::string(what) + ": row out of range");
  }

  std::unique_ptr<CudaTensor> make(int rows, int cols) {
    auto t = std::make_unique<CudaTensor>(rows, cols);
    if (rows > 0 && cols > 0) {
      t->block = std::make_shared<DeviceBlock>(pool_, bytes_of(rows, cols));
      t->data = static_cast<float*>(t->block->ptr);
    }
    return t;
  }

  // Dense device data of a tensor; a lazy concatenation is materialised with one launch.
  const float* read(const Tensor& t) {
    const CudaTensor& c = cu(t);
    if (c.chunks.empty()) return c.data;
    BlockPtr fresh = std::make_shared<DeviceBlock>(pool_, bytes_of(t.rows(), t.cols()));
    std::vector<kernels::CopyPiece> list;
    std::int64_t row = 0;
    for (const Chunk& ch : c.chunks) {
      const std::int64_t n = static_cast<std::int64_t>(ch.rows) * t.cols();
      float* dst = static_cast<float*>(fresh->ptr) + row * t.cols();
      for (const cuda_plan::Piece& p : cuda_plan::split_copy(n, 1 << 16))
        list.push_back({ch.data + p.src_offset, dst + p.dst_offset, p.count});
      row += ch.rows;
    }
    BlockPtr m = upload_meta(list.data(), list.size() * sizeof(kernels::CopyPiece));
    kernels::batched_copy(static_cast<const kernels::CopyPiece*>(m->ptr), static_cast<int>(list.size()), stream_);
    c.chunks.clear();
    c.block = std::move(fresh);
    c.data = static_cast<float*>(c.block->ptr);
    return c.data;
  }

  const void* read_bf16(const Tensor& t) {
    const CudaTensor& c = cu(t);
    if (c.bf16) return c.bf16->ptr;
    const float* d = read(t);
    const std::size_t n = static_cast<std::size_t>(t.rows()) * t.cols();
    c.bf16 = std::make_shared<DeviceBlock>(pool_, n * 2);
    kernels::convert(d, ElemType::F32, c.bf16->ptr, ElemType::BF16, n, stream_);
    return c.bf16->ptr;
  }

  // A context (keys or values) as at most two row-contiguous pieces.
  void pieces(const Tensor& t, const float*& p0, const float*& p1, int& rows0) {
    const CudaTensor& c = cu(t);
    if (c.chunks.size() == 2) {
      p0 = c.chunks[0].data;
      rows0 = c.chunks[0].rows;
      p1 = c.chunks[1].data;
      return;
    }
    p0 = read(t);
    rows0 = t.rows();
    p1 = p0;
  }

  BlockPtr upload_meta(const void* data, std::size_t bytes) {
    BlockPtr b = std::make_shared<DeviceBlock>(pool_, bytes);
    if (bytes == 0) return b;
    if (bytes <= ring_->capacity()) {
      void* staged = ring_->stage(data, bytes, stream_);
      MOETRACE_CUDA_CHECK(cudaMemcpyAsync(b->ptr, staged, bytes, cudaMemcpyHostToDevice, stream_));
    } else {
      copy_to_device(b->ptr, data, bytes);
    }
    return b;
  }
  BlockPtr upload_pack(const MetaPack& p) { return upload_meta(p.bytes().data(), p.bytes().size()); }

  // Host (pageable or mapped) to device through two pinned chunks, overlapping the host-side copy
  // of one chunk with the transfer of the other. Returns when the data has left `src`.
  void copy_to_device(void* dst, const void* src, std::size_t bytes) {
    if (bytes <= (64u << 10)) {
      void* staged = ring_->stage(src, bytes, stream_);
      MOETRACE_CUDA_CHECK(cudaMemcpyAsync(dst, staged, bytes, cudaMemcpyHostToDevice, stream_));
      return;
    }
    int cur = 0;
    for (std::size_t off = 0; off < bytes; off += kUploadChunk) {
      const std::size_t n = std::min(kUploadChunk, bytes - off);
      MOETRACE_CUDA_CHECK(cudaEventSynchronize(upload_events_[cur]));
      char* stage = static_cast<char*>(upload_stage_) + cur * kUploadChunk;
      std::memcpy(stage, static_cast<const char*>(src) + off, n);
      MOETRACE_CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(dst) + off, stage, n, cudaMemcpyHostToDevice, stream_));
      MOETRACE_CUDA_CHECK(cudaEventRecord(upload_events_[cur], stream_));
      cur ^= 1;
    }
  }

  // C_i = A_i^T B_i (column-major view) for every problem, as one grouped cuBLAS call when
  // possible, else one call per problem. Device pointer arrays for the grouped call, host copies
  // of the same pointers for the fallback.
  void grouped_gemm(const std::vector<int>& m, const std::vector<int>& n, const std::vector<int>& k,
                    const std::vector<int>& sizes, const void* const* a_dev, const void* const* b_dev,
                    void* const* c_dev, ElemType type, const std::vector<const void*>& a_host,
                    const std::vector<const void*>& b_host, const std::vector<void*>& c_host) {
    const int groups = static_cast<int>(m.size());
    const cudaDataType_t ab = type == ElemType::BF16 ? CUDA_R_16BF : CUDA_R_32F;
    if (grouped_ok_) {
      std::vector<cublasOperation_t> ta(groups, CUBLAS_OP_T), tb(groups, CUBLAS_OP_N);
      std::vector<float> alpha(groups, 1.f), beta(groups, 0.f);
      const cublasStatus_t s =
          cublasGemmGroupedBatchedEx(blas_, ta.data(), tb.data(), m.data(), n.data(), k.data(), alpha.data(), a_dev, ab,
                                     k.data(), b_dev, ab, k.data(), beta.data(), c_dev, CUDA_R_32F, m.data(), groups,
                                     sizes.data(), CUBLAS_COMPUTE_32F);
      if (s == CUBLAS_STATUS_SUCCESS) return;
      if (s != CUBLAS_STATUS_NOT_SUPPORTED && s != CUBLAS_STATUS_INVALID_VALUE) MOETRACE_CUBLAS_CHECK(s);
      grouped_ok_ = false;  // this cuBLAS cannot: per-problem calls from now on
    }
    const float one = 1.f, zero = 0.f;
    std::size_t p = 0;
    for (int g = 0; g < groups; ++g)
      for (int i = 0; i < sizes[g]; ++i, ++p)
        MOETRACE_CUBLAS_CHECK(cublasGemmEx(blas_, CUBLAS_OP_T, CUBLAS_OP_N, m[g], n[g], k[g], &one, a_host[p], ab, k[g],
                                           b_host[p], ab, k[g], &zero, c_host[p], CUDA_R_32F, m[g], CUBLAS_COMPUTE_32F,
                                           CUBLAS_GEMM_DEFAULT));
  }

  CudaBackendOptions opt_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  std::shared_ptr<DevicePool> pool_;
  std::unique_ptr<StagingRing> ring_;
  void* upload_stage_ = nullptr;
  cudaEvent_t upload_events_[2]{};
  std::size_t weight_bytes_ = 0;
  bool grouped_ok_ = true;
  std::vector<int> last_positions_;
  BlockPtr positions_dev_;
};

}  // namespace

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

std::unique_ptr<Backend> make_cuda_backend(const CudaBackendOptions& options) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    throw InputError(std::string("the CUDA backend found no usable GPU: ") + cudaGetErrorName(e) + " (" +
                     cudaGetErrorString(e) + ")");
  }
  if (n == 0) throw InputError("the CUDA backend found no GPU");
  if (options.device < 0 || options.device >= n)
    throw InputError("CUDA device " + std::to_string(options.device) + " does not exist (" + std::to_string(n) +
                     " device(s) visible)");
  return std::make_unique<CudaBackend>(options);
}

namespace cuda {
namespace {
CudaBackend& as_cuda(Backend& b) {
  auto* c = dynamic_cast<CudaBackend*>(&b);
  if (!c) fail_internal(__FILE__, __LINE__, "backend '" + b.name() + "' is not the CUDA backend");
  return *c;
}
}  // namespace

std::size_t pool_peak_bytes(Backend& backend) { return as_cuda(backend).pool().peak(); }

}  // namespace cuda
}  // namespace moetrace
