// Batched execution: per-fact cost of the layer and expert sweeps for several chunk sizes, on
// random-weight checkpoints with real layer widths (a benchmark, not a test).
//
// Writes two bf16 checkpoints in hub layout (safetensors + config.json, real vocabularies):
//   qwen3-30b-a3b widths: 2 layers, hidden 2048, 128 experts top-8, moe_intermediate 768,
//                         32 q / 4 kv heads, head_dim 128, vocab 151936
//   mixtral-8x7b widths:  1 layer, hidden 4096, 8 experts top-2, intermediate 14336,
//                         32 q / 8 kv heads, head_dim 128, vocab 32000
// then, for each chunk size, treats --facts random facts (16-token prompts, 4-token subjects, one
// noise sample) chunk by chunk exactly as `moetrace run` does: one batched preparation of the
// chunk's clean and noised runs (CaseTracer::prepare_batch), a layer sweep (MoE output restored at
// the final position, each layer) and an expert sweep at one layer (each clean-active expert at the
// final position), all of a chunk's conditions in one CaseTracer::evaluate (Sweeps).
//
// Reported per fact: CPU time (process CPU seconds, all threads) and wall time, scaled to the
// model's full depth (48 / 32 layers) by the cost per layer-token step measured at the bench
// depth times the full-depth step count of the same work; engine calls and layer-token steps as
// measured. Chunk sizes run interleaved in every repeat (min and median reported), so that the
// ratios are side by side under the same machine load.
//
//   moetrace_batch_bench [--facts 64] [--repeat 2] [--chunks 1,16,64] [--dir /tmp/moetrace-batch-bench]
//                        [--model qwen3|mixtral|both]
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "backend/backend.h"
#include "engine/case_tracer.h"
#include "engine/device_model.h"
#include "model/model_weights.h"
#include "protocols/sweeps.h"
#include "util/counter_rng.h"
#include "util/error.h"

using namespace moetrace;
namespace fs = std::filesystem;

namespace {

struct ModelSpec {
  std::string name, model_type, arch;
  int layers, full_layers, hidden, experts, top_k, expert_inter, heads, kv_heads, head_dim, vocab;
};

const ModelSpec kQwen{"qwen3-30b-a3b", "qwen3_moe", "Qwen3MoeForCausalLM", 2, 48, 2048, 128, 8, 768, 32, 4, 128, 151936};
const ModelSpec kMixtral{"mixtral-8x7b", "mixtral", "MixtralForCausalLM", 1, 32, 4096, 8, 2, 14336, 32, 8, 128, 32000};

std::uint16_t to_bf16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fff + ((u >> 16) & 1);  // round to nearest even
  return static_cast<std::uint16_t>(u >> 16);
}

// A safetensors file written tensor by tensor (the header first), so that no whole model is held
// in memory; values are N(0, std) in bf16 (norm weights: 1).
class StreamingWriter {
 public:
  void add(std::string name, std::vector<std::int64_t> shape, float std) {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    tensors_.push_back({std::move(name), std::move(shape), n, std});
  }
  void write(const fs::path& path, std::uint64_t seed) const {
    nlohmann::ordered_json h;
    h["__metadata__"] = {{"format", "pt"}};
    std::int64_t off = 0;
    for (const auto& t : tensors_) {
      h[t.name] = {{"dtype", "BF16"}, {"shape", t.shape}, {"data_offsets", {off, off + 2 * t.n}}};
      off += 2 * t.n;
    }
    std::string header = h.dump();
    while (header.size() % 8) header += ' ';
    std::ofstream out(path, std::ios::binary);
    const std::uint64_t len = header.size();
    out.write(reinterpret_cast<const char*>(&len), 8);
    out.write(header.data(), static_cast<std::streamsize>(header.size()));
    std::vector<std::uint16_t> buf;
    std::vector<float> vals;
    std::uint64_t k = 0;
    for (const auto& t : tensors_) {
      NoiseStream rng(seed, k++, 0);
      constexpr std::int64_t kBlock = 1 << 22;
      for (std::int64_t done = 0; done < t.n; done += kBlock) {
        const std::int64_t m = std::min(kBlock, t.n - done);
        vals.resize(static_cast<std::size_t>(m));
        if (t.std > 0) rng.fill_normal(vals.data(), vals.size(), t.std);
        else std::fill(vals.begin(), vals.end(), 1.0f);
        buf.resize(vals.size());
        for (std::size_t i = 0; i < vals.size(); ++i) buf[i] = to_bf16(vals[i]);
        out.write(reinterpret_cast<const char*>(buf.data()), static_cast<std::streamsize>(2 * buf.size()));
      }
    }
    if (!out) throw std::runtime_error("cannot write " + path.string());
  }

 private:
  struct T {
    std::string name;
    std::vector<std::int64_t> shape;
    std::int64_t n;
    float std;
  };
  std::vector<T> tensors_;
};

fs::path write_checkpoint(const ModelSpec& s, const fs::path& root) {
  const fs::path dir = root / s.name;
  fs::create_directories(dir);
  nlohmann::ordered_json c = {{"architectures", {s.arch}}, {"model_type", s.model_type}, {"vocab_size", s.vocab},
                              {"hidden_size", s.hidden}, {"num_hidden_layers", s.layers},
                              {"num_attention_heads", s.heads}, {"num_key_value_heads", s.kv_heads},
                              {"head_dim", s.head_dim}, {"num_experts_per_tok", s.top_k}, {"rms_norm_eps", 1e-6},
                              {"rope_theta", 1e6}, {"max_position_embeddings", 4096}, {"tie_word_embeddings", false},
                              {"torch_dtype", "bfloat16"}, {"hidden_act", "silu"}};
  const bool qwen = s.model_type == "qwen3_moe";
  if (qwen) {
    c["num_experts"] = s.experts;
    c["moe_intermediate_size"] = s.expert_inter;
    c["intermediate_size"] = 6144;
    c["norm_topk_prob"] = true;
    c["decoder_sparse_step"] = 1;
    c["mlp_only_layers"] = nlohmann::json::array();
  } else {
    c["num_local_experts"] = s.experts;
    c["intermediate_size"] = s.expert_inter;
  }
  std::ofstream(dir / "config.json") << c.dump(2);
  if (fs::exists(dir / "model.safetensors")) return dir;  // written by an earlier run: same seed, same file
  const float w = 0.02f;
  StreamingWriter st;
  st.add("model.embed_tokens.weight", {s.vocab, s.hidden}, w);
  const int q = s.heads * s.head_dim, kv = s.kv_heads * s.head_dim;
  for (int l = 0; l < s.layers; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    st.add(p + "input_layernorm.weight", {s.hidden}, 0);
    st.add(p + "post_attention_layernorm.weight", {s.hidden}, 0);
    st.add(p + "self_attn.q_proj.weight", {q, s.hidden}, w);
    st.add(p + "self_attn.k_proj.weight", {kv, s.hidden}, w);
    st.add(p + "self_attn.v_proj.weight", {kv, s.hidden}, w);
    st.add(p + "self_attn.o_proj.weight", {s.hidden, q}, w);
    if (qwen) {
      st.add(p + "self_attn.q_norm.weight", {s.head_dim}, 0);
      st.add(p + "self_attn.k_norm.weight", {s.head_dim}, 0);
    }
    const std::string moe = p + (qwen ? "mlp." : "block_sparse_moe.");
    st.add(moe + "gate.weight", {s.experts, s.hidden}, w);
    for (int e = 0; e < s.experts; ++e) {
      const std::string x = moe + fmt::format("experts.{}.", e);
      if (qwen) {
        st.add(x + "gate_proj.weight", {s.expert_inter, s.hidden}, w);
        st.add(x + "up_proj.weight", {s.expert_inter, s.hidden}, w);
        st.add(x + "down_proj.weight", {s.hidden, s.expert_inter}, w);
      } else {
        st.add(x + "w1.weight", {s.expert_inter, s.hidden}, w);
        st.add(x + "w3.weight", {s.expert_inter, s.hidden}, w);
        st.add(x + "w2.weight", {s.hidden, s.expert_inter}, w);
      }
    }
  }
  st.add("model.norm.weight", {s.hidden}, 0);
  st.add("lm_head.weight", {s.vocab, s.hidden}, w);
  std::fprintf(stderr, "writing %s ...\n", (dir / "model.safetensors").c_str());
  st.write(dir / "model.safetensors.partial", 7);
  fs::rename(dir / "model.safetensors.partial", dir / "model.safetensors");
  return dir;
}

double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + 1e-6 * (u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

struct Measure {
  double cpu = 0, wall = 0;
  std::uint64_t calls = 0, steps = 0;
};

// The facts of one chunk size, chunk by chunk, as the pipeline treats them.
Measure run_facts(CaseTracer& tracer, const Sweeps& sweeps, const std::vector<PrepareRequest>& facts, int chunk,
                  int expert_layer) {
  Measure m;
  const std::uint64_t calls0 = tracer.work().engine_calls, steps0 = tracer.engine().layer_token_steps();
  const double c0 = cpu_seconds();
  const auto t0 = std::chrono::steady_clock::now();
  double sink = 0;
  for (std::size_t b = 0; b < facts.size(); b += chunk) {
    std::vector<PrepareRequest> req(facts.begin() + static_cast<std::ptrdiff_t>(b),
                                    facts.begin() + static_cast<std::ptrdiff_t>(std::min(facts.size(), b + chunk)));
    const std::vector<TracedCase> tcs = tracer.prepare_batch(std::move(req));
    Chunk c;
    for (const TracedCase& tc : tcs) c.push_back(&tc);
    for (const auto& r : sweeps.layer_sweep(c)) sink += r[0];
    for (const auto& r : sweeps.expert_layers(c, {expert_layer})) sink += r[0].clean_active[0];
  }
  m.wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  m.cpu = cpu_seconds() - c0;
  m.calls = tracer.work().engine_calls - calls0;
  m.steps = tracer.engine().layer_token_steps() - steps0;
  if (sink == 12345.678) std::printf(" ");  // keeps the work observable
  return m;
}

// Layer-token steps per fact of the benchmarked work at depth L (one noise sample): clean run (T),
// noised run from the first subject token (T - s0), layer sweep at the final position (L - l for
// each l), expert sweep at layer `el` (k conditions of L - el steps).
double steps_per_fact(int L, int T, int s0, int k, int el) {
  return static_cast<double>(L) * T + static_cast<double>(L) * (T - s0) + L * (L + 1) / 2.0 + static_cast<double>(k) * (L - el);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

void bench_model(const ModelSpec& s, const fs::path& root, int facts_n, int repeat, const std::vector<int>& chunks) {
  const fs::path dir = write_checkpoint(s, root);
  ModelWeights weights = load_model(dir);
  auto backend = make_cpu_backend();
  DeviceModel model = upload_model(weights, *backend);
  Engine engine(model, *backend);
  CaseTracer tracer(engine, 4096);
  RunConfig config;  // layer sweep: MoE output, final position, window 1
  Sweeps sweeps(config, tracer);

  constexpr int T = 16, s0 = 4, s1 = 8;
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> tok(3, s.vocab - 1);
  std::vector<PrepareRequest> facts;
  for (int f = 0; f < facts_n; ++f) {
    PrepareRequest r;
    for (int t = 0; t < T; ++t) r.prompt.ids.push_back(tok(rng));
    r.prompt.subject_begin = s0;
    r.prompt.subject_end = s1;
    r.prompt.true_id = tok(rng);
    r.prompt.foil_id = tok(rng);
    std::vector<float> noise(static_cast<std::size_t>(s1 - s0) * s.hidden);
    NoiseStream(3, static_cast<std::uint64_t>(f), 0).fill_normal(noise.data(), noise.size(), 0.05);
    r.noise.push_back(std::move(noise));
    facts.push_back(std::move(r));
  }
  const int expert_layer = 0;  // every bench layer follows it
  run_facts(tracer, sweeps, std::vector<PrepareRequest>(facts.begin(), facts.begin() + 1), 1, expert_layer);  // warm-up

  std::map<int, std::vector<Measure>> runs;
  for (int r = 0; r < repeat; ++r)
    for (int c : chunks) runs[c].push_back(run_facts(tracer, sweeps, facts, c, expert_layer));

  const double bench_steps = steps_per_fact(s.layers, T, s0, s.top_k, expert_layer);
  const double full_steps = steps_per_fact(s.full_layers, T, s0, s.top_k, s.full_layers / 2);
  const double scale = full_steps / bench_steps;
  std::printf("\n## %s widths: %d of %d layers, hidden %d, %d experts top-%d, expert intermediate %d, vocab %d\n",
              s.name.c_str(), s.layers, s.full_layers, s.hidden, s.experts, s.top_k, s.expert_inter, s.vocab);
  std::printf("%d facts (16 tokens, 4-token subject, 1 noise sample), %d repeat(s); full depth = x%.1f the bench's "
              "layer-token steps (%.0f vs %.0f per fact)\n\n", facts_n, repeat, scale, full_steps, bench_steps);
  std::printf("| chunk | CPU s/fact full depth (min / median) | wall s/fact full depth (min / median) | engine calls/fact | layer-token steps/fact (bench depth) | CPU speed-up vs chunk %d (min) |\n",
              chunks.front());
  std::printf("|------:|------:|------:|------:|------:|------:|\n");
  double base = 0;
  for (int c : chunks) {
    std::vector<double> cpu, wall;
    for (const Measure& m : runs[c]) {
      cpu.push_back(m.cpu / facts_n * scale);
      wall.push_back(m.wall / facts_n * scale);
    }
    const double cmin = *std::min_element(cpu.begin(), cpu.end());
    if (c == chunks.front()) base = cmin;
    const Measure& m = runs[c].front();
    std::printf("| %d | %.3f / %.3f | %.3f / %.3f | %.2f | %.0f | %.2fx |\n", c, cmin, median(cpu),
                *std::min_element(wall.begin(), wall.end()), median(wall), static_cast<double>(m.calls) / facts_n,
                static_cast<double>(m.steps) / facts_n, base / cmin);
    std::fflush(stdout);
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"moetrace batched-execution benchmark: per-fact sweep cost by chunk size at real layer widths"};
  int facts = 64, repeat = 2;
  std::vector<int> chunks{1, 16, 64};
  std::string dir = (fs::temp_directory_path() / "moetrace-batch-bench").string(), which = "both";
  app.add_option("--facts", facts, "facts per chunk size and repeat")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--repeat", repeat, "repeats (chunk sizes interleaved)")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--chunks", chunks, "chunk sizes (facts per chunk); the first is the baseline")->delimiter(',')->capture_default_str();
  app.add_option("--dir", dir, "where the random checkpoints are written (kept for later runs)")->capture_default_str();
  app.add_option("--model", which, "qwen3, mixtral or both")->check(CLI::IsMember({"qwen3", "mixtral", "both"}))->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
#ifdef _OPENMP
    const int threads = omp_get_max_threads();
#else
    const int threads = 1;
#endif
    std::printf("# moetrace_batch_bench: CPU backend, %d OpenMP thread(s); CPU time = process user+system seconds\n", threads);
    if (which != "mixtral") bench_model(kQwen, dir, facts, repeat, chunks);
    if (which != "qwen3") bench_model(kMixtral, dir, facts, repeat, chunks);
  } catch (const InputError& e) {
    std::fprintf(stderr, "moetrace_batch_bench: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moetrace_batch_bench: internal error: %s\n", e.what());
    return 3;
  }
  return 0;
}
