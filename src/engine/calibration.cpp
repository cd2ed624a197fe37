#include "engine/calibration.h"

#include <unistd.h>

#include <algorithm>
#include <deque>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <memory>
#include <random>

#include <fmt/format.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "engine/device_model.h"
#include "engine/forward.h"
#include "util/counter_rng.h"
#include "util/error.h"
#include "util/half_precision.h"
#include "util/message.h"

#ifndef MOETRACE_VERSION_STRING
#define MOETRACE_VERSION_STRING "unknown"
#endif

namespace moetrace {
namespace {

constexpr int kCalibrationLayers = 2;
constexpr int kCalibrationVocab = 64;
constexpr float kWeightStd = 0.02f;

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// ---- the random-weight model ---------------------------------------------------------------------

// bf16 N(0, kWeightStd) values for the largest tensor (every weight views a prefix of them: timing
// does not depend on the values) and ones for the norm weights.
class RandomWeights {
 public:
  RandomWeights(Backend& backend, std::size_t largest, std::size_t widest_norm) : backend_(backend) {
    std::vector<float> f(largest);
    NoiseStream(20261206, 0, 0).fill_normal(f.data(), f.size(), kWeightStd);
    values_.resize(largest);
    for (std::size_t i = 0; i < largest; ++i) values_[i] = float_to_bf16(f[i]);
    ones_.assign(widest_norm, float_to_bf16(1.0f));
  }
  WeightPtr matrix(const std::string& name, std::int64_t rows, std::int64_t cols) {
    return upload(name, {rows, cols}, values_.data());
  }
  WeightPtr norm(const std::string& name, std::int64_t n) { return upload(name, {n}, ones_.data()); }

 private:
  WeightPtr upload(const std::string& name, std::vector<std::int64_t> shape, const std::uint16_t* data) {
    TensorView v;
    v.name = name;
    v.file = "calibration model";
    v.dtype = DType::BF16;
    v.shape = std::move(shape);
    v.data = reinterpret_cast<const std::byte*>(data);
    return backend_.upload_weight(v);
  }
  Backend& backend_;
  std::vector<std::uint16_t> values_, ones_;
};

DeviceLayer random_layer(RandomWeights& w, const ModelConfig& c, int l) {
  const std::string p = fmt::format("model.layers.{}.", l);
  const std::int64_t h = c.hidden_size, q = c.q_width(), kv = c.kv_width(), in = c.expert_width;
  DeviceLayer d;
  d.attn_norm = w.norm(p + "input_layernorm.weight", h);
  d.moe_norm = w.norm(p + "post_attention_layernorm.weight", h);
  d.q_proj = w.matrix(p + "self_attn.q_proj.weight", q, h);
  d.k_proj = w.matrix(p + "self_attn.k_proj.weight", kv, h);
  d.v_proj = w.matrix(p + "self_attn.v_proj.weight", kv, h);
  d.o_proj = w.matrix(p + "self_attn.o_proj.weight", h, q);
  if (c.qk_norm == QkNorm::PerHead) {
    d.q_norm = w.norm(p + "self_attn.q_norm.weight", c.head_dim);
    d.k_norm = w.norm(p + "self_attn.k_norm.weight", c.head_dim);
  } else if (c.qk_norm == QkNorm::WholeProjection) {
    d.q_norm = w.norm(p + "self_attn.q_norm.weight", q);
    d.k_norm = w.norm(p + "self_attn.k_norm.weight", kv);
  }
  d.router = w.matrix(p + "mlp.gate.weight", c.num_experts, h);
  d.experts.resize(static_cast<std::size_t>(c.num_experts));
  for (int e = 0; e < c.num_experts; ++e) {
    const std::string x = p + fmt::format("mlp.experts.{}.", e);
    d.experts[e].gate = w.matrix(x + "gate_proj.weight", in, h);
    d.experts[e].up = w.matrix(x + "up_proj.weight", in, h);
    d.experts[e].down = w.matrix(x + "down_proj.weight", h, in);
  }
  return d;
}

// kCalibrationLayers decoder layers of `real`'s widths, all experts local.
DeviceModel random_model(Backend& backend, const ModelConfig& real) {
  DeviceModel m;
  m.config = real;
  m.config.num_layers = kCalibrationLayers;
  m.config.vocab_size = kCalibrationVocab;
  m.local_experts = {0, real.num_experts};
  const std::int64_t h = real.hidden_size, q = real.q_width(), kv = real.kv_width();
  const std::int64_t largest = std::max({h * q, h * kv, h * real.num_experts, h * real.expert_width,
                                         h * kCalibrationVocab});
  RandomWeights w(backend, static_cast<std::size_t>(largest), static_cast<std::size_t>(std::max(h, q)));
  m.embed = w.matrix("model.embed_tokens.weight", kCalibrationVocab, h);
  m.final_norm = w.norm("model.norm.weight", h);
  m.lm_head = w.matrix("lm_head.weight", kCalibrationVocab, h);
  for (int l = 0; l < kCalibrationLayers; ++l) m.layers.push_back(random_layer(w, real, l));
  return m;
}

// ---- the timed calls -----------------------------------------------------------------------------

Prompt random_prompt(std::mt19937& rng, int tokens) {
  std::uniform_int_distribution<int> tok(3, kCalibrationVocab - 1);
  Prompt p;
  for (int t = 0; t < tokens; ++t) p.ids.push_back(tok(rng));
  p.subject_begin = std::min(1, tokens - 1);
  p.subject_end = std::min(3, tokens);
  p.true_id = 1;
  p.foil_id = 2;
  return p;
}

// One series of timed calls: a kind and a row count.
struct Series {
  bool prepare = false;
  int rows = 0;
  std::vector<double> seconds;  // wall time of each timed call
  std::uint64_t steps = 0;      // layer-token steps of one call
};

class Timer {
 public:
  Timer(Engine& engine, const CalibrationOptions& o) : engine_(engine), o_(o), rng_(5) {
    // Bases of the patched calls: prompts recorded in full once (untimed).
    for (int i = 0; i < 16; ++i) base_prompts_.push_back(random_prompt(rng_, o_.prompt_tokens));
    std::vector<StreamSpec> specs;
    for (const Prompt& p : base_prompts_) specs.push_back({.prompt = &p, .record = RecordLevel::Full});
    for (StreamOutput& out : engine_.run(specs)) bases_.push_back(std::move(out.record));
    const int last = o_.prompt_tokens - 1;
    condition_ = restore_site(Site::Moe, 0, {last});
  }

  // Times one call of the series' kind and rows; returns its wall seconds.
  double time(Series& s) {
    if (s.prepare) prepare_prompts(s.rows);
    std::vector<StreamSpec> specs = s.prepare ? prepare_specs() : patched_specs(s.rows);
    const std::uint64_t steps0 = engine_.layer_token_steps();
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<StreamOutput> out = engine_.run(specs);
    const double t = seconds_since(t0);
    s.steps = engine_.layer_token_steps() - steps0;
    s.seconds.push_back(t);
    if (s.prepare) retain(std::move(out));
    return t;
  }

 private:
  // Prompts of prompt_tokens tokens (the last one shorter) holding `rows` tokens in all.
  void prepare_prompts(int rows) {
    prompts_.clear();
    for (int left = rows; left > 0; left -= o_.prompt_tokens)
      prompts_.push_back(random_prompt(rng_, std::min(left, o_.prompt_tokens)));
  }
  std::vector<StreamSpec> prepare_specs() const {
    std::vector<StreamSpec> specs;
    for (const Prompt& p : prompts_) specs.push_back({.prompt = &p, .record = RecordLevel::Full});
    return specs;
  }
  // `rows` one-row continuations at the final position, restoring layer 0's MoE output there.
  std::vector<StreamSpec> patched_specs(int rows) const {
    std::vector<StreamSpec> specs;
    for (int i = 0; i < rows; ++i) {
      const std::size_t b = static_cast<std::size_t>(i) % bases_.size();
      specs.push_back({.prompt = &base_prompts_[b], .start_layer = 0, .start_pos = o_.prompt_tokens - 1,
                       .base = bases_[b].get(), .clean = bases_[b].get(), .condition = &condition_});
    }
    return specs;
  }

  // A run keeps its prepared cases (the prepared-case cache), so each preparation records into fresh
  // memory (page faults included); the calibration keeps its last ones up to kRetainedBytes too.
  static constexpr std::size_t kRetainedBytes = std::size_t{1} << 30;
  static std::size_t tensor_bytes(const TensorPtr& t) {
    return t ? static_cast<std::size_t>(t->rows()) * static_cast<std::size_t>(t->cols()) * sizeof(float) : 0;
  }
  static std::size_t record_bytes(const RunRecord& r) {
    std::size_t b = tensor_bytes(r.output);
    for (const LayerRecord& l : r.layers)
      b += tensor_bytes(l.input) + tensor_bytes(l.keys) + tensor_bytes(l.values) + tensor_bytes(l.attn_out) +
           tensor_bytes(l.moe_out) + tensor_bytes(l.updates);
    return b;
  }
  void retain(std::vector<StreamOutput> out) {
    for (StreamOutput& o : out) {
      if (!o.record) continue;
      retained_bytes_ += record_bytes(*o.record);
      retained_.push_back(std::move(o.record));
    }
    while (retained_bytes_ > kRetainedBytes && !retained_.empty()) {
      retained_bytes_ -= record_bytes(*retained_.front());
      retained_.pop_front();
    }
  }

  Engine& engine_;
  const CalibrationOptions& o_;
  std::deque<std::unique_ptr<RunRecord>> retained_;
  std::size_t retained_bytes_ = 0;
  std::mt19937 rng_;
  std::vector<Prompt> base_prompts_, prompts_;
  std::vector<std::unique_ptr<RunRecord>> bases_;
  Condition condition_;
};

// Series in timing order (rows ascending, prepare then patched at each row count).
std::vector<Series> make_series(const CalibrationOptions& o) {
  std::vector<int> rows = o.rows;
  std::sort(rows.begin(), rows.end());
  rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
  std::vector<Series> series;
  for (int r : rows)
    for (bool prepare : {true, false}) series.push_back({.prepare = prepare, .rows = r, .seconds = {}, .steps = 0});
  return series;
}

// A call of `rows` rows of a kind, predicted from the kind's timed calls so far: linear in rows
// through the last two (proportional to rows through the only one).
double predicted_call(const std::vector<const Series*>& done, int rows) {
  const Series& b = *done.back();
  if (done.size() == 1) return b.seconds.front() * rows / b.rows;
  const Series& a = *done[done.size() - 2];
  const double slope = std::max(0.0, (b.seconds.front() - a.seconds.front()) / (b.rows - a.rows));
  return b.seconds.front() + slope * (rows - b.rows);
}

// The budget counts from `start` (after the model is built). First pass, ascending: every row count
// whose predicted call fits in what is left (the smallest of each kind always); then repeats of the
// timed ones while the budget lasts.
void time_series(Timer& timer, std::vector<Series>& series, const CalibrationOptions& o,
                 std::chrono::steady_clock::time_point start) {
  std::vector<const Series*> done[2];  // timed series by kind
  std::vector<Series*> timed;
  for (Series& s : series) {
    std::vector<const Series*>& kind = done[s.prepare ? 1 : 0];
    if (!kind.empty() && seconds_since(start) + predicted_call(kind, s.rows) > o.budget_seconds) continue;
    timer.time(s);
    kind.push_back(&s);
    timed.push_back(&s);
  }
  for (int r = 1; r < o.repeats; ++r)
    for (Series* s : timed)
      if (seconds_since(start) + s->seconds.front() <= o.budget_seconds) timer.time(*s);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// Per-layer time of a series' calls (median), made non-decreasing in rows within a kind (more rows
// never cost less; a smaller median is noise).
struct LayerTime {
  bool prepare;
  double rows, seconds, spread;
  int samples;
};

std::vector<LayerTime> layer_times(const std::vector<Series>& series) {
  std::vector<LayerTime> out;
  double floor[2] = {0, 0};
  for (const Series& s : series) {
    if (s.seconds.empty()) continue;
    const double m = median(s.seconds);
    const auto [lo, hi] = std::minmax_element(s.seconds.begin(), s.seconds.end());
    double& f = floor[s.prepare ? 1 : 0];
    f = std::max(f, m / kCalibrationLayers);
    out.push_back({s.prepare, static_cast<double>(s.steps) / kCalibrationLayers, f, m > 0 ? (*hi - *lo) / m : 0,
                   static_cast<int>(s.seconds.size())});
  }
  return out;
}

// Intercept of the per-layer time through the two smallest row counts of a kind (0 when it falls
// with rows or the kind has one point).
double intercept(const std::vector<LayerTime>& times, bool prepare) {
  const LayerTime* a = nullptr;
  const LayerTime* b = nullptr;
  for (const LayerTime& t : times) {
    if (t.prepare != prepare) continue;
    if (!a) a = &t;
    else if (!b) b = &t;
  }
  if (!a || !b || b->rows <= a->rows || b->seconds <= a->seconds) return 0;
  const double slope = (b->seconds - a->seconds) / (b->rows - a->rows);
  return std::max(0.0, a->seconds - slope * a->rows);
}

// The per-layer-pass cost (the smaller intercept, at most half the cheapest layer time) and each
// point's seconds per step beyond it.
void fit(const std::vector<LayerTime>& times, CalibratedRates& rates) {
  double cheapest = INFINITY;
  for (const LayerTime& t : times) cheapest = std::min(cheapest, t.seconds);
  const double pass = std::min({intercept(times, true), intercept(times, false), cheapest / 2});
  rates.seconds_per_layer_pass = pass;
  for (const LayerTime& t : times)
    rates.points.push_back({t.prepare, t.rows, (t.seconds - pass) / t.rows, t.samples, t.spread});
  std::stable_sort(rates.points.begin(), rates.points.end(),
                   [](const RatePoint& a, const RatePoint& b) { return a.prepare > b.prepare; });
}

std::string read_cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) != 0) continue;
    const std::size_t colon = line.find(':');
    if (colon == std::string::npos) break;
    const std::size_t b = line.find_first_not_of(" \t", colon + 1);
    return b == std::string::npos ? "unknown" : line.substr(b);
  }
  return "unknown";
}

std::string read_host() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

int default_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

}  // namespace

std::string rate_shape(const ModelConfig& c) {
  return fmt::format("{},{},{},{},{},{},{}", c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim, c.num_experts,
                     c.top_k, c.expert_width);
}

RateKey current_rate_key(Backend& backend, const std::string& backend_name, int threads, const ModelConfig& config) {
  RateKey k;
  k.host = read_host();
  k.cpu_model = read_cpu_model();
  k.backend = backend_name;
  k.threads = threads;
  const std::string layout = backend.weight_layout();
  k.versions = layout.empty() ? fmt::format("moetrace {}", MOETRACE_VERSION_STRING)
                              : fmt::format("moetrace {}; {}", MOETRACE_VERSION_STRING, layout);
  k.shape = rate_shape(config);
  return k;
}

CalibratedRates calibrate_rates(Backend& backend, const ModelConfig& real, const CalibrationOptions& options) {
  MOETRACE_ASSERT(options.prompt_tokens >= 2 && !options.rows.empty() && options.repeats >= 1,
                  "calibration options out of range");
  for (int r : options.rows) MOETRACE_ASSERT(r >= 1, "calibration rows must be positive");
  const auto start = std::chrono::steady_clock::now();
  CalibratedRates rates;
  rates.key = current_rate_key(backend, backend.name(), options.threads > 0 ? options.threads : default_threads(), real);
  rates.measured_at = utc_now();
  const DeviceModel model = random_model(backend, real);
  Engine engine(model, backend);
  Timer timer(engine, options);
  std::vector<Series> series = make_series(options);
  timer.time(series[0]);  // warm-up (scratch allocations, library initialisation): not kept
  timer.time(series[1]);
  series[0].seconds.clear();
  series[1].seconds.clear();
  const double build_seconds = seconds_since(start);
  time_series(timer, series, options, std::chrono::steady_clock::now());
  fit(layer_times(series), rates);
  rates.calibration_seconds = seconds_since(start);
  rates.source = fmt::format("calibrated on {} ({}) with {}, {} thread(s): {} points in {:.0f} s ({:.0f} s building "
                             "the 2-layer model)", rates.key.host, rates.key.cpu_model, rates.key.backend,
                             rates.key.threads, rates.points.size(), rates.calibration_seconds, build_seconds);
  return rates;
}

namespace {

// Seconds per step at `rows` from the points of one kind (rows ascending): log-log interpolation
// between neighbours (the call time stays non-decreasing in rows), the end rates outside.
double rate_at(const std::vector<const RatePoint*>& pts, double rows) {
  if (rows <= pts.front()->rows) return pts.front()->seconds_per_step;
  if (rows >= pts.back()->rows) return pts.back()->seconds_per_step;
  std::size_t i = 1;
  while (pts[i]->rows < rows) ++i;
  const RatePoint& a = *pts[i - 1];
  const RatePoint& b = *pts[i];
  const double f = std::log(rows / a.rows) / std::log(b.rows / a.rows);
  return std::exp(std::log(a.seconds_per_step) + f * (std::log(b.seconds_per_step) - std::log(a.seconds_per_step)));
}

}  // namespace

double predict_seconds(const CalibratedRates& rates, const CallShape& call) {
  if (call.layers <= 0) return 0;
  std::vector<const RatePoint*> pts;
  for (const RatePoint& p : rates.points)
    if (p.prepare == call.prepare) pts.push_back(&p);
  if (pts.empty())
    for (const RatePoint& p : rates.points) pts.push_back(&p);
  MOETRACE_ASSERT(!pts.empty(), "rates without points");
  std::stable_sort(pts.begin(), pts.end(), [](const RatePoint* a, const RatePoint* b) { return a->rows < b->rows; });
  return call.layers * rates.seconds_per_layer_pass + static_cast<double>(call.steps) * rate_at(pts, call.rows());
}

const CalibratedRates* find_rates(const std::vector<CalibratedRates>& list, const RateKey& key) {
  for (const CalibratedRates& r : list)
    if (r.key == key) return &r;
  return nullptr;
}

void replace_rates(std::vector<CalibratedRates>& list, CalibratedRates rates) {
  for (CalibratedRates& r : list)
    if (r.key == rates.key) {
      r = std::move(rates);
      return;
    }
  list.push_back(std::move(rates));
}

}  // namespace moetrace
