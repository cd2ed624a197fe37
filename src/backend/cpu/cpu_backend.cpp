// The CPU backend: activations are float32 Eigen matrices in host memory; weights are packed once,
// at upload, into oneDNN's blocked layout (float32 in `cpu`, bf16 in `cpu-bf16`) and every product
// x W^T goes through cpu::matmul (cpu_matmul.h). Embedding tables and norm weights stay plain
// row-major. Per-row work (norms, RoPE, attention per stream and head, experts) is spread over
// OpenMP threads; a single product uses oneDNN's OpenMP threading.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <new>

#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <fmt/format.h>
#include <Eigen/Dense>

#include "backend/backend.h"
#include "backend/cpu/cpu_routing.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_matmul.h"
#include "util/error.h"

namespace moetrace {
namespace {

using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Activation memory. Blocks of at least kMinBytes are kept when freed (up to kMaxKeptBytes in all)
// and handed out again for the same size: a chunk's large tensors are allocated afresh at every
// layer with the same sizes, and fresh memory from the system costs a page fault and a zeroing per
// page (measured: about a third of a 64-fact chunk's CPU time at Qwen3 widths without this).
class BlockPool {
 public:
  static constexpr std::size_t kMinBytes = std::size_t{1} << 20, kMaxKeptBytes = std::size_t{1} << 30;
  static float* get(std::size_t n) {
    const std::size_t bytes = n * sizeof(float);
    if (bytes >= kMinBytes) {
      std::lock_guard<std::mutex> lock(mutex());
      auto& kept = blocks();
      if (auto it = kept.find(bytes); it != kept.end()) {
        float* p = it->second;
        kept.erase(it);
        kept_bytes() -= bytes;
        return p;
      }
    }
    void* p = std::aligned_alloc(64, std::max<std::size_t>(64, (bytes + 63) / 64 * 64));
    if (!p) throw std::bad_alloc();
    return static_cast<float*>(p);
  }
  static void put(float* p, std::size_t n) {
    const std::size_t bytes = n * sizeof(float);
    if (bytes >= kMinBytes) {
      std::lock_guard<std::mutex> lock(mutex());
      if (kept_bytes() + bytes <= kMaxKeptBytes) {
        blocks().emplace(bytes, p);
        kept_bytes() += bytes;
        return;
      }
    }
    std::free(p);
  }

 private:
  // Never destroyed: tensors may outlive static destruction.
  static std::mutex& mutex() { static auto* m = new std::mutex; return *m; }
  static std::multimap<std::size_t, float*>& blocks() { static auto* b = new std::multimap<std::size_t, float*>; return *b; }
  static std::size_t& kept_bytes() { static std::size_t n = 0; return n; }
};

class CpuTensor final : public Tensor {
 public:
  struct Uninitialized {};
  CpuTensor(int rows, int cols, Uninitialized)
      : Tensor(rows, cols), buf_(BlockPool::get(numel(rows, cols))), m(buf_, rows, cols) {}
  CpuTensor(int rows, int cols) : CpuTensor(rows, cols, Uninitialized{}) { m.setZero(); }
  ~CpuTensor() override { BlockPool::put(buf_, numel(rows(), cols())); }
  CpuTensor(const CpuTensor&) = delete;
  CpuTensor& operator=(const CpuTensor&) = delete;

 private:
  static std::size_t numel(int rows, int cols) { return static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols); }
  float* buf_;

 public:
  Eigen::Map<Matrix, Eigen::Aligned64> m;
};

class CpuWeight final : public Weight {
 public:
  CpuWeight(const TensorView& view, int rows, int cols, cpu::WeightType type, bool packed)
      : Weight(rows, cols), w(view, rows, cols, type, packed) {}
  CpuWeight(const std::byte* image, std::size_t bytes, int rows, int cols, cpu::WeightType type, bool packed,
            const std::string& origin)
      : Weight(rows, cols), w(image, bytes, rows, cols, type, packed, origin) {}
  cpu::PackedWeight w;
};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
// Embedding tables and the read-out are read by rows (embed, select_logits): kept plain.
bool is_table(const std::string& name) { return ends_with(name, "embed_tokens.weight") || ends_with(name, "lm_head.weight"); }
bool is_router(const std::string& name) { return ends_with(name, ".gate.weight"); }

// Thread-local, grow-only scratch matrices for run_experts.
struct ExpertScratch {
  std::vector<float> in, gate, up, out;
};
float* grow(std::vector<float>& v, std::size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

CpuTensor& cpu(Tensor& t) { return static_cast<CpuTensor&>(t); }
const CpuTensor& cpu(const Tensor& t) { return static_cast<const CpuTensor&>(t); }
const CpuWeight& cpu(const Weight& w) { return static_cast<const CpuWeight&>(w); }

// The row `r` refers to, null for a row of zeros.
const float* row_data(const RowRef& r) {
  if (!r.tensor) return nullptr;
  MOETRACE_ASSERT(r.row >= 0 && r.row < r.tensor->rows(), "row_distances: row out of range");
  return cpu(*r.tensor).m.data() + static_cast<std::size_t>(r.row) * r.tensor->cols();
}

// Backend::row_distances for one pair: float32 difference, squares summed in double in column order.
double row_distance(const RowPair& p) {
  MOETRACE_ASSERT(!p.a.tensor || !p.b.tensor || p.a.tensor->cols() == p.b.tensor->cols(),
                  "row_distances: widths differ");
  const int cols = p.a.tensor ? p.a.tensor->cols() : p.b.tensor ? p.b.tensor->cols() : 0;
  const float* a = row_data(p.a);
  const float* b = row_data(p.b);
  double s = 0;
  for (int i = 0; i < cols; ++i) {
    const float d = (a ? a[i] : 0.0f) - (b ? b[i] : 0.0f);
    s += static_cast<double>(d) * d;
  }
  return std::sqrt(s);
}

std::unique_ptr<CpuTensor> make(int rows, int cols) { return std::make_unique<CpuTensor>(rows, cols); }
// For outputs that the op writes whole (no zero fill: at a chunk's sizes the fill and the page
// faults of fresh memory cost as much as the products).
std::unique_ptr<CpuTensor> make_written(int rows, int cols) {
  return std::make_unique<CpuTensor>(rows, cols, CpuTensor::Uninitialized{});
}

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const CpuBackendOptions& o) : opt_(o) {
    if (const char* env = std::getenv("MOETRACE_CPU_BF16_FALLBACK"); env && std::string(env) == "1")
      opt_.force_bf16_fallback = true;
    bf16_packed_ = !opt_.force_bf16_fallback && cpu::cpu_has_native_bf16();
  }

  std::string name() const override { return opt_.precision == CpuPrecision::BF16 ? "cpu-bf16" : "cpu"; }

  TensorPtr zeros(int rows, int cols) override { return make(rows, cols); }

  TensorPtr upload(const float* host, int rows, int cols) override {
    auto t = make_written(rows, cols);
    if (rows > 0 && cols > 0) std::memcpy(t->m.data(), host, sizeof(float) * rows * cols);
    return t;
  }

  void download(const Tensor& t, float* host) override {
    const auto& m = cpu(t).m;
    if (m.size()) std::memcpy(host, m.data(), sizeof(float) * m.size());
  }

  WeightPtr upload_weight(const TensorView& view) override {
    const auto [rows, cols] = weight_matrix_shape(view);
    const Form f = form(view);
    auto w = std::make_unique<CpuWeight>(view, rows, cols, f.type, f.packed);
    weight_bytes_ += w->w.bytes();
    return w;
  }

  // The image depends on the mode, on whether bf16 products are packed on this CPU, and on oneDNN's
  // blocked layout (its version and the instruction set it picked).
  std::string weight_layout() const override {
    const dnnl_version_t* v = dnnl_version();
    return fmt::format("{} bf16-packed={} onednn={}.{}.{} isa={}", name(), bf16_packed_ ? 1 : 0, v->major, v->minor,
                       v->patch, static_cast<int>(dnnl_get_effective_cpu_isa()));
  }

  std::span<const std::byte> weight_image(const Weight& weight) const override {
    const auto& w = cpu(weight).w;
    return {w.image(), w.bytes()};
  }

  WeightPtr map_weight(const TensorView& view, const std::byte* image, std::size_t bytes,
                       const std::string& origin) override {
    const auto [rows, cols] = weight_matrix_shape(view);
    const Form f = form(view);
    auto w = std::make_unique<CpuWeight>(image, bytes, rows, cols, f.type, f.packed,
                                         origin + ": tensor '" + view.name + "'");
    weight_bytes_ += w->w.bytes();
    return w;
  }

  std::size_t weight_bytes() const override { return weight_bytes_; }

  TensorPtr embed(const Weight& table, const std::vector<int>& ids) override {
    const auto& w = cpu(table).w;
    auto out = make_written(static_cast<int>(ids.size()), w.k());
    for (std::size_t i = 0; i < ids.size(); ++i) {
      MOETRACE_ASSERT(ids[i] >= 0 && ids[i] < w.n(), "token id out of range");
      w.row(ids[i], out->m.data() + i * static_cast<std::size_t>(w.k()));
    }
    return out;
  }

  TensorPtr gather_rows(const Tensor& src, const std::vector<int>& rows) override {
    const auto& s = cpu(src).m;
    auto out = make_written(static_cast<int>(rows.size()), s.cols());
    for (std::size_t i = 0; i < rows.size(); ++i) out->m.row(i) = s.row(rows[i]);
    return out;
  }

  void copy_rows(const Tensor& src, const std::vector<int>& src_rows, Tensor& dst,
                 const std::vector<int>& dst_rows) override {
    MOETRACE_ASSERT(src_rows.size() == dst_rows.size(), "row lists differ in length");
    const auto& s = cpu(src).m;
    auto& d = cpu(dst).m;
    for (std::size_t i = 0; i < src_rows.size(); ++i) d.row(dst_rows[i]) = s.row(src_rows[i]);
  }

  void add_rows(const Tensor& src, const std::vector<int>& src_rows, Tensor& dst,
                const std::vector<int>& dst_rows, float scale) override {
    MOETRACE_ASSERT(src_rows.size() == dst_rows.size(), "row lists differ in length");
    const auto& s = cpu(src).m;
    auto& d = cpu(dst).m;
    for (std::size_t i = 0; i < src_rows.size(); ++i) d.row(dst_rows[i]) += scale * s.row(src_rows[i]);
  }

  TensorPtr concat_rows(const std::vector<const Tensor*>& parts) override {
    int rows = 0, cols = parts.empty() ? 0 : parts.front()->cols();
    for (const Tensor* p : parts) {
      MOETRACE_ASSERT(p->cols() == cols, "concatenated tensors differ in width");
      rows += p->rows();
    }
    auto out = make_written(rows, cols);
    int r = 0;
    for (const Tensor* p : parts) {
      out->m.middleRows(r, p->rows()) = cpu(*p).m;
      r += p->rows();
    }
    return out;
  }

  void add(Tensor& dst, const Tensor& src) override {
    MOETRACE_ASSERT(dst.rows() == src.rows() && dst.cols() == src.cols(), "shape mismatch in add");
    cpu(dst).m += cpu(src).m;
  }

  TensorPtr linear(const Tensor& x, const Weight& w) override {
    const auto& a = cpu(x).m;
    const auto& b = cpu(w).w;
    MOETRACE_ASSERT(a.cols() == b.k(), "linear: input width does not match the weight");
    auto out = make_written(static_cast<int>(a.rows()), b.n());
    cpu::matmul(a.data(), static_cast<int>(a.rows()), b, out->m.data());
    return out;
  }

  TensorPtr rms_norm(const Tensor& x, const Weight& weight, int group, float eps) override {
    const auto& a = cpu(x).m;
    const auto& wt = cpu(weight).w;
    MOETRACE_ASSERT(wt.n() == 1 && wt.k() == group && wt.type() == cpu::WeightType::F32 && !wt.packed() &&
                        a.cols() % group == 0,
                    "rms_norm: bad group size");
    const float* w = wt.f32_data();
    auto out = make_written(a.rows(), a.cols());
    const int groups = a.cols() / group;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < a.rows(); ++r) {
      for (int g = 0; g < groups; ++g) {
        const float* in = a.data() + static_cast<std::ptrdiff_t>(r) * a.cols() + g * group;
        float* o = out->m.data() + static_cast<std::ptrdiff_t>(r) * a.cols() + g * group;
        double ss = 0;  // double accumulation: the mean of squares is the sensitive part
        for (int c = 0; c < group; ++c) ss += static_cast<double>(in[c]) * in[c];
        const float inv = static_cast<float>(1.0 / std::sqrt(ss / group + eps));
        for (int c = 0; c < group; ++c) o[c] = w[c] * (in[c] * inv);
      }
    }
    return out;
  }

  void rope(Tensor& x, const std::vector<int>& positions, int head_dim, double theta) override {
    auto& m = cpu(x).m;
    MOETRACE_ASSERT(static_cast<int>(positions.size()) == m.rows(), "rope: one position per row");
    const int half = head_dim / 2, heads = m.cols() / head_dim;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < m.rows(); ++r) {
      for (int i = 0; i < half; ++i) {
        const double inv_freq = std::pow(theta, -2.0 * i / head_dim);
        const double angle = positions[r] * inv_freq;
        const float c = static_cast<float>(std::cos(angle)), s = static_cast<float>(std::sin(angle));
        for (int h = 0; h < heads; ++h) {
          float* v = m.data() + static_cast<std::ptrdiff_t>(r) * m.cols() + h * head_dim;
          const float a = v[i], b = v[i + half];
          v[i] = a * c - b * s;         // q cos + rotate_half(q) sin, rotate_half = [-x2, x1]
          v[i + half] = b * c + a * s;
        }
      }
    }
  }

  TensorPtr attention(const Tensor& q, const std::vector<AttentionSegment>& segments,
                      const AttentionShape& shape) override {
    const auto& qm = cpu(q).m;
    const int hd = shape.head_dim, group = shape.num_heads / shape.num_kv_heads;
    auto out = make(qm.rows(), shape.num_heads * hd);
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    // Flatten (segment, head) pairs so that threads share the work evenly.
    const int pairs = static_cast<int>(segments.size()) * shape.num_heads;
#pragma omp parallel for schedule(dynamic)
    for (int p = 0; p < pairs; ++p) {
      const AttentionSegment& seg = segments[p / shape.num_heads];
      const int h = p % shape.num_heads, kvh = h / group;
      const auto& K = cpu(*seg.keys).m;
      const auto& V = cpu(*seg.values).m;
      MOETRACE_ASSERT(K.rows() >= seg.first_pos + seg.num_queries, "attention: key context too short");
      std::vector<float> scores(seg.first_pos + seg.num_queries);
      for (int i = 0; i < seg.num_queries; ++i) {
        const int pos = seg.first_pos + i;
        const float* qv = qm.data() + static_cast<std::ptrdiff_t>(seg.q_row + i) * qm.cols() + h * hd;
        float mx = -std::numeric_limits<float>::infinity();
        for (int j = 0; j <= pos; ++j) {
          const float* kv = K.data() + static_cast<std::ptrdiff_t>(j) * K.cols() + kvh * hd;
          float s = 0;
          for (int c = 0; c < hd; ++c) s += qv[c] * kv[c];
          scores[j] = s * scale;
          mx = std::max(mx, scores[j]);
        }
        float denom = 0;
        for (int j = 0; j <= pos; ++j) {
          scores[j] = std::exp(scores[j] - mx);
          denom += scores[j];
        }
        float* o = out->m.data() + static_cast<std::ptrdiff_t>(seg.q_row + i) * out->m.cols() + h * hd;
        for (int j = 0; j <= pos; ++j) {
          const float pj = scores[j] / denom;
          const float* vv = V.data() + static_cast<std::ptrdiff_t>(j) * V.cols() + kvh * hd;
          for (int c = 0; c < hd; ++c) o[c] += pj * vv[c];
        }
      }
    }
    return out;
  }

  void run_experts(const Tensor& x, const std::vector<ExpertTask>& tasks, Tensor& out) override {
    const auto& xm = cpu(x).m;
    auto& om = cpu(out).m;
    const int H = static_cast<int>(xm.cols()), ntasks = static_cast<int>(tasks.size());
    // Each task writes distinct output rows, so tasks run in parallel without races. With fewer
    // tasks than threads the tasks run one after the other and each product uses every thread.
    const bool task_parallel = ntasks >= omp_get_max_threads();
#pragma omp parallel for schedule(dynamic) if (task_parallel)
    for (int t = 0; t < ntasks; ++t) {
      const ExpertTask& task = tasks[t];
      const int n = static_cast<int>(task.in_rows.size());
      if (n == 0) continue;
      const auto& gw = cpu(*task.gate).w;
      const auto& uw = cpu(*task.up).w;
      const auto& dw = cpu(*task.down).w;
      MOETRACE_ASSERT(gw.k() == H && uw.k() == H && uw.n() == gw.n() && dw.k() == gw.n() && dw.n() == om.cols(),
                      "run_experts: expert shapes do not match");
      const int I = gw.n();
      thread_local ExpertScratch ws;
      float* in = grow(ws.in, static_cast<std::size_t>(n) * H);
      float* g = grow(ws.gate, static_cast<std::size_t>(n) * I);
      float* u = grow(ws.up, static_cast<std::size_t>(n) * I);
      float* y = grow(ws.out, static_cast<std::size_t>(n) * om.cols());
      for (int i = 0; i < n; ++i)
        std::memcpy(in + static_cast<std::size_t>(i) * H, xm.data() + static_cast<std::size_t>(task.in_rows[i]) * H,
                    sizeof(float) * H);
      cpu::matmul(in, n, gw, g);
      cpu::matmul(in, n, uw, u);
      for (std::size_t i = 0; i < static_cast<std::size_t>(n) * I; ++i) {
        const float a = g[i];
        g[i] = a / (1.0f + std::exp(-a)) * u[i];
      }
      cpu::matmul(g, n, dw, y);
      for (int i = 0; i < n; ++i)
        om.row(task.out_rows[i]) =
            task.weights[i] * Eigen::Map<const Eigen::RowVectorXf>(y + static_cast<std::size_t>(i) * om.cols(), om.cols());
    }
  }

  TensorPtr sum_slots(const Tensor& slots, int k) override {
    const auto& s = cpu(slots).m;
    MOETRACE_ASSERT(s.rows() % k == 0, "sum_slots: rows not a multiple of k");
    auto out = make(s.rows() / k, s.cols());
    for (int r = 0; r < out->rows(); ++r)
      for (int j = 0; j < k; ++j) out->m.row(r) += s.row(r * k + j);
    return out;
  }

  std::vector<float> select_logits(const Tensor& x, const Weight& table, const std::vector<int>& ids,
                                   int per_row) override {
    const auto& a = cpu(x).m;
    const auto& w = cpu(table).w;
    MOETRACE_ASSERT(static_cast<int>(ids.size()) == a.rows() * per_row, "select_logits: ids per row");
    MOETRACE_ASSERT(a.cols() == w.k(), "select_logits: width");
    std::vector<float> out(ids.size());
    for (int r = 0; r < a.rows(); ++r)
      for (int j = 0; j < per_row; ++j) {
        const int id = ids[r * per_row + j];
        MOETRACE_ASSERT(id >= 0 && id < w.n(), "select_logits: id out of range");
        out[r * per_row + j] = w.dot_row(a.data() + static_cast<std::size_t>(r) * a.cols(), id);
      }
    return out;
  }

  std::vector<double> row_distances(const std::vector<RowPair>& pairs) override {
    std::vector<double> out;
    out.reserve(pairs.size());
    for (const RowPair& p : pairs) out.push_back(row_distance(p));
    return out;
  }

  // Routing is implemented in cpu_routing.cpp.
  RoutingPtr route(const Tensor& logits, const RouteRequest& request) override {
    return route_on_host(cpu(logits).m.data(), logits.rows(), logits.cols(), request);
  }

 private:
  struct Form {
    cpu::WeightType type;
    bool packed;
  };
  // Norm weights (1-D) and the router stay float32 in bf16 mode; embedding tables and the read-out
  // stay plain (row access).
  Form form(const TensorView& view) const {
    const bool bf16 = opt_.precision == CpuPrecision::BF16 && view.shape.size() == 2 && !is_router(view.name);
    const bool packed = view.shape.size() == 2 && !is_table(view.name) && (!bf16 || bf16_packed_);
    return {bf16 ? cpu::WeightType::BF16 : cpu::WeightType::F32, packed};
  }

  CpuBackendOptions opt_;
  bool bf16_packed_ = false;  // bf16 products through oneDNN (native bf16) rather than the fallback
  std::size_t weight_bytes_ = 0;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const CpuBackendOptions& options) {
  return std::make_unique<CpuBackend>(options);
}
std::unique_ptr<Backend> make_cpu_backend() { return make_cpu_backend(CpuBackendOptions{}); }

}  // namespace moetrace
