#include "engine/device_model.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <map>

#include "util/error.h"

namespace moetrace {
namespace {

// Drops a tensor's pages of the memory-mapped checkpoint from this process's resident set once the
// backend holds its own copy, so that a load peaks at about the weights held rather than weights +
// file. The mapping is read-only and private (never written), so MADV_DONTNEED only discards clean
// file pages: a later read faults them back in from the file. Views outside the checkpoint's mapped
// files (tests build some in memory) are left alone.
class MappedPages {
 public:
  explicit MappedPages(const Checkpoint* ckpt) {
    if (!ckpt) return;
    for (const auto& [name, t] : ckpt->tensors()) {
      const auto b = reinterpret_cast<std::uintptr_t>(t.data);
      const auto e = b + static_cast<std::uintptr_t>(t.numel()) * dtype_size(t.dtype);
      auto [it, fresh] = spans_.try_emplace(t.file, b, e);
      if (!fresh) it->second = {std::min(it->second.first, b), std::max(it->second.second, e)};
    }
  }

  void release(const TensorView& v) const {
    const auto b = reinterpret_cast<std::uintptr_t>(v.data);
    const auto e = b + static_cast<std::uintptr_t>(v.numel()) * dtype_size(v.dtype);
    const auto it = spans_.find(v.file);
    if (it == spans_.end() || b < it->second.first || e > it->second.second || e == b) return;
    static const std::uintptr_t page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
    const std::uintptr_t pb = b & ~(page - 1), pe = (e + page - 1) & ~(page - 1);
    ::madvise(reinterpret_cast<void*>(pb), pe - pb, MADV_DONTNEED);  // advice only: failure is harmless
  }

 private:
  std::map<std::string, std::pair<std::uintptr_t, std::uintptr_t>> spans_;  // per file: first .. last tensor byte
};

}  // namespace

ExpertRange expert_block(int num_experts, int rank, int ranks) {
  MOETRACE_ASSERT(ranks >= 1 && rank >= 0 && rank < ranks, "bad rank");
  const int base = num_experts / ranks, extra = num_experts % ranks;
  const int begin = rank * base + std::min(rank, extra);
  return {begin, begin + base + (rank < extra ? 1 : 0)};
}

DeviceModel upload_model(const ModelWeights& w, Backend& b, ExpertRange local) {
  DeviceModel m;
  m.config = w.config;
  m.local_experts = local;
  const MappedPages mapped(w.checkpoint.get());
  const auto up = [&](const TensorView& v) {
    WeightPtr p = b.upload_weight(v);
    mapped.release(v);
    return p;
  };
  m.embed = up(w.embed);
  m.final_norm = up(w.final_norm);
  m.lm_head = up(w.lm_head);
  for (const LayerWeights& L : w.layers) {
    DeviceLayer d;
    d.attn_norm = up(L.attn_norm);
    d.moe_norm = up(L.moe_norm);
    d.q_proj = up(L.q_proj);
    d.k_proj = up(L.k_proj);
    d.v_proj = up(L.v_proj);
    d.o_proj = up(L.o_proj);
    if (L.q_norm) d.q_norm = up(*L.q_norm);
    if (L.k_norm) d.k_norm = up(*L.k_norm);
    d.router = up(L.router);
    d.experts.resize(L.experts.size());
    for (int e = local.begin; e < local.end; ++e) {
      d.experts[e].gate = up(L.experts[e].gate);
      d.experts[e].up = up(L.experts[e].up);
      d.experts[e].down = up(L.experts[e].down);
    }
    m.layers.push_back(std::move(d));
  }
  return m;
}

}  // namespace moetrace
