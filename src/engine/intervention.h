#pragma once
// The intervention vocabulary of the engine: what a patched run changes, where and when.
// Definitions follow docs/PROTOCOL.md (restore = take the clean run's value; an expert's update is
// c_e = w_e E_e(u) under the routing of its own run, 0 where e is not routed).
#include <utility>
#include <vector>

namespace moetrace {

enum class Site {
  Hidden,   // residual stream after layer l
  Attn,     // attention-block output of layer l (before the residual add)
  Moe,      // MoE-block output of layer l (before the residual add)
  Experts,  // add sum_{e in S} c_e(clean) - c_e(own run) to the MoE output; no rerouting
};

enum class ExpertSet {
  Listed,       // the experts in Patch::experts
  CleanRouted,  // the experts routed in the clean run at that (layer, position): `clean_topk`
  Union,        // clean-routed and own-routed: equals restoring the MoE output
};

struct Patch {
  Site site = Site::Moe;
  int layer = 0;
  std::vector<int> positions;
  ExpertSet expert_set = ExpertSet::Listed;
  std::vector<int> experts;  // for ExpertSet::Listed
  float scale = 1.0f;        // Experts only: add scale * (c(clean) - c(own)) (equal-norm controls)
};

// One patched run: every patch applies (a window is several patches of consecutive layers).
struct Condition {
  std::vector<Patch> patches;
  int first_layer() const;
  int first_position() const;
};

// (layer, expert) pairs whose router logits are set to -inf before softmax and top-k.
using Deactivation = std::vector<std::pair<int, int>>;

// Builders for the common conditions.
Condition restore_site(Site site, int layer, std::vector<int> positions);
Condition restore_window(Site site, int center_layer, int window, int num_layers, std::vector<int> positions);
Condition restore_experts(int layer, std::vector<int> positions, ExpertSet set, std::vector<int> experts = {});

}  // namespace moetrace
