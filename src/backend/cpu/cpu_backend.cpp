// The reference backend: float32 Eigen matrices in host memory. Per-row work (norms, RoPE,
// attention per stream and head, experts) is spread over OpenMP threads; matrix products are
// single-threaded Eigen GEMMs over fixed blocks of output columns spread over the threads.
#include <cmath>
#include <cstring>
#include <limits>

#include <Eigen/Dense>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "backend/backend.h"
#include "backend/cpu/cpu_routing.h"
#include "util/error.h"

namespace moetrace {
namespace {

using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

class CpuTensor final : public Tensor {
 public:
  CpuTensor(int rows, int cols) : Tensor(rows, cols), m(Matrix::Zero(rows, cols)) {}
  Matrix m;
};

class CpuWeight final : public Weight {
 public:
  CpuWeight(int rows, int cols) : Weight(rows, cols), m(rows, cols) {}
  Matrix m;
};

CpuTensor& cpu(Tensor& t) { return static_cast<CpuTensor&>(t); }
const CpuTensor& cpu(const Tensor& t) { return static_cast<const CpuTensor&>(t); }
const CpuWeight& cpu(const Weight& w) { return static_cast<const CpuWeight&>(w); }

std::unique_ptr<CpuTensor> make(int rows, int cols) { return std::make_unique<CpuTensor>(rows, cols); }

// out = a b^T such that every row of out depends only on the same row of a, never on how many
// other rows share the call (the pipeline batches any number of cases into one call, and results
// must not depend on the chunk size). Eigen's products are not so by themselves: one row takes
// the GEMV path, and a multi-threaded GEMM blocks the depth differently from a single-threaded
// one. So the product is always a single-threaded GEMM (threads split fixed blocks of output
// columns; inside an OpenMP region Eigen does not start its own), and one row is padded to two.
// tests/pipeline/test_row_independence.cpp checks the property.
template <typename A>
void row_independent_product(const A& a, const Matrix& b, Matrix& out) {
  // Eigen evaluates products with rows + cols + depth < 20 coefficient-wise, and treats the rows
  // past the last full SIMD packet one by one with another summation order; padding the rows to a
  // multiple of the packet size (and to at least two rows) keeps every row on
  // the same GEMM kernels.
  constexpr Eigen::Index kPacket = Eigen::internal::packet_traits<float>::size;
  Eigen::Index min_rows = std::max<Eigen::Index>({2, a.rows(), 20 - b.rows() - b.cols()});
  min_rows = (min_rows + kPacket - 1) / kPacket * kPacket;
  if (a.rows() < min_rows) {
    Matrix padded = Matrix::Zero(min_rows, a.cols());
    padded.topRows(a.rows()) = a;
    Matrix o(min_rows, b.rows());
    row_independent_product(padded, b, o);
    out = o.topRows(a.rows());
    return;
  }
  constexpr int kColumnBlock = 256;  // fixed, so the blocking never depends on the thread count
  const int blocks = static_cast<int>((b.rows() + kColumnBlock - 1) / kColumnBlock);
  auto block = [&](int j) {
    const Eigen::Index c0 = static_cast<Eigen::Index>(j) * kColumnBlock;
    const Eigen::Index n = std::min<Eigen::Index>(kColumnBlock, b.rows() - c0);
    out.middleCols(c0, n).noalias() = a * b.middleRows(c0, n).transpose();
  };
#ifdef _OPENMP
  if (!omp_in_parallel() && blocks > 1) {
#pragma omp parallel for schedule(static)
    for (int j = 0; j < blocks; ++j) block(j);
    return;
  }
#endif
  for (int j = 0; j < blocks; ++j) block(j);
}

class CpuBackend final : public Backend {
 public:
  std::string name() const override { return "cpu"; }

  TensorPtr zeros(int rows, int cols) override { return make(rows, cols); }

  TensorPtr upload(const float* host, int rows, int cols) override {
    auto t = make(rows, cols);
    if (rows > 0 && cols > 0) std::memcpy(t->m.data(), host, sizeof(float) * rows * cols);
    return t;
  }

  void download(const Tensor& t, float* host) override {
    const auto& m = cpu(t).m;
    if (m.size()) std::memcpy(host, m.data(), sizeof(float) * m.size());
  }

  WeightPtr upload_weight(const TensorView& view) override {
    const auto [rows, cols] = weight_matrix_shape(view);
    auto w = std::make_unique<CpuWeight>(rows, cols);
    view.to_float(w->m.data());
    weight_bytes_ += sizeof(float) * static_cast<std::size_t>(rows) * cols;
    return w;
  }

  std::size_t weight_bytes() const override { return weight_bytes_; }

  TensorPtr embed(const Weight& table, const std::vector<int>& ids) override {
    const auto& w = cpu(table).m;
    auto out = make(static_cast<int>(ids.size()), w.cols());
    for (std::size_t i = 0; i < ids.size(); ++i) {
      MOETRACE_ASSERT(ids[i] >= 0 && ids[i] < w.rows(), "token id out of range");
      out->m.row(i) = w.row(ids[i]);
    }
    return out;
  }

  TensorPtr gather_rows(const Tensor& src, const std::vector<int>& rows) override {
    const auto& s = cpu(src).m;
    auto out = make(static_cast<int>(rows.size()), s.cols());
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
    auto out = make(rows, cols);
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
    const auto& b = cpu(w).m;
    MOETRACE_ASSERT(a.cols() == b.cols(), "linear: input width does not match the weight");
    auto out = make(a.rows(), b.rows());
    if (a.rows()) row_independent_product(a, b, out->m);
    return out;
  }

  TensorPtr rms_norm(const Tensor& x, const Weight& weight, int group, float eps) override {
    const auto& a = cpu(x).m;
    const auto& w = cpu(weight).m;
    MOETRACE_ASSERT(w.cols() == group && a.cols() % group == 0, "rms_norm: bad group size");
    auto out = make(a.rows(), a.cols());
    const int groups = a.cols() / group;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < a.rows(); ++r) {
      for (int g = 0; g < groups; ++g) {
        const float* in = a.data() + static_cast<std::ptrdiff_t>(r) * a.cols() + g * group;
        float* o = out->m.data() + static_cast<std::ptrdiff_t>(r) * a.cols() + g * group;
        double ss = 0;  // double accumulation: the mean of squares is the sensitive part
        for (int c = 0; c < group; ++c) ss += static_cast<double>(in[c]) * in[c];
        const float inv = static_cast<float>(1.0 / std::sqrt(ss / group + eps));
        for (int c = 0; c < group; ++c) o[c] = w(0, c) * (in[c] * inv);
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
    // Each task writes distinct output rows, so tasks run in parallel without races.
#pragma omp parallel for schedule(dynamic)
    for (int t = 0; t < static_cast<int>(tasks.size()); ++t) {
      const ExpertTask& task = tasks[t];
      if (task.in_rows.empty()) continue;
      Matrix in(task.in_rows.size(), xm.cols());
      for (std::size_t i = 0; i < task.in_rows.size(); ++i) in.row(i) = xm.row(task.in_rows[i]);
      Matrix g(in.rows(), cpu(*task.gate).m.rows()), u(in.rows(), cpu(*task.up).m.rows());
      row_independent_product(in, cpu(*task.gate).m, g);
      row_independent_product(in, cpu(*task.up).m, u);
      for (Eigen::Index i = 0; i < g.size(); ++i) {
        const float a = g.data()[i];
        g.data()[i] = a / (1.0f + std::exp(-a)) * u.data()[i];
      }
      Matrix y(g.rows(), cpu(*task.down).m.rows());
      row_independent_product(g, cpu(*task.down).m, y);
      for (std::size_t i = 0; i < task.out_rows.size(); ++i) om.row(task.out_rows[i]) = task.weights[i] * y.row(i);
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
    const auto& w = cpu(table).m;
    MOETRACE_ASSERT(static_cast<int>(ids.size()) == a.rows() * per_row, "select_logits: ids per row");
    std::vector<float> out(ids.size());
    for (int r = 0; r < a.rows(); ++r)
      for (int j = 0; j < per_row; ++j) out[r * per_row + j] = a.row(r).dot(w.row(ids[r * per_row + j]));
    return out;
  }

  // Routing is implemented in cpu_routing.cpp.
  RoutingPtr route(const Tensor& logits, const RouteRequest& request) override {
    return route_on_host(cpu(logits).m.data(), logits.rows(), logits.cols(), request);
  }

 private:
  std::size_t weight_bytes_ = 0;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace moetrace
