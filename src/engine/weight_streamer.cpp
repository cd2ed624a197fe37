#include "engine/weight_streamer.h"

#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "util/logging.h"

namespace moetrace {
namespace {

using Advice = WeightStoreFile::Advice;

// The names of the rank's tensors: per layer, and the rest (embeddings, final norm, read-out).
struct RankTensors {
  std::vector<std::vector<std::string>> layers;
  std::vector<std::string> other;
};

RankTensors rank_tensors(const ModelWeights& w, ExpertRange local) {
  RankTensors t;
  for (const TensorView* v : {&w.embed, &w.final_norm, &w.lm_head}) t.other.push_back(v->name);
  for (const LayerWeights& L : w.layers) {
    std::vector<std::string> names;
    for (const TensorView* v : layer_tensors(L, local.begin, local.end)) names.push_back(v->name);
    t.layers.push_back(std::move(names));
  }
  return t;
}

std::uint64_t bytes_of(const WeightStoreFile& store, const std::vector<std::string>& names) {
  std::uint64_t n = 0;
  for (const auto& name : names)
    if (auto it = store.blobs().find(name); it != store.blobs().end()) n += it->second.bytes;
  return n;
}

void advise_all(const WeightStoreFile& store, const std::vector<std::string>& names, Advice a) {
  for (const auto& name : names) store.advise(name, a);
}

class LayerStreamer final : public LayerObserver {
 public:
  LayerStreamer(const WeightStoreFile& store, RankTensors tensors, int first_streamed)
      : store_(store), t_(std::move(tensors)), first_(first_streamed), worker_([this] { work(); }) {}
  ~LayerStreamer() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      done_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }

  // The next streamed layer is read in while this one computes (after the last layer: the first
  // streamed one, for the next call).
  void entering(int layer) override {
    const int n = static_cast<int>(t_.layers.size());
    const int next = layer + 1 < n ? layer + 1 : first_;
    if (next >= first_ && next != layer) request(next);
  }
  void leaving(int layer) override {
    if (layer >= first_) advise_all(store_, t_.layers[layer], Advice::Release);
  }

 private:
  // Only the latest request counts: a layer the engine has already left is never read in again.
  void request(int layer) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      wanted_ = layer;
    }
    cv_.notify_one();
  }
  void work() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      cv_.wait(lock, [&] { return done_ || wanted_ >= 0; });
      if (done_) return;
      const int layer = wanted_;
      wanted_ = -1;
      lock.unlock();
      advise_all(store_, t_.layers[layer], Advice::Populate);
      lock.lock();
    }
  }

  const WeightStoreFile& store_;
  RankTensors t_;
  int first_;
  std::mutex mutex_;
  std::condition_variable cv_;
  int wanted_ = -1;  // the layer to read in next, -1: none
  bool done_ = false;
  std::thread worker_;
};

}  // namespace

std::shared_ptr<LayerObserver> plan_weight_residency(const WeightStoreFile& store, const ModelWeights& w,
                                                     ExpertRange local, std::uint64_t budget) {
  const RankTensors t = rank_tensors(w, local);
  std::uint64_t resident = bytes_of(store, t.other), total = resident;
  for (const auto& layer : t.layers) total += bytes_of(store, layer);
  advise_all(store, t.other, Advice::Populate);
  int first_streamed = 0;
  for (; first_streamed < static_cast<int>(t.layers.size()); ++first_streamed) {
    const std::uint64_t b = bytes_of(store, t.layers[first_streamed]);
    if (resident + b > budget) break;
    resident += b;
    advise_all(store, t.layers[first_streamed], Advice::Populate);
  }
  if (first_streamed == static_cast<int>(t.layers.size())) return nullptr;
  const std::string kept = first_streamed == 0 ? std::string("no layer stays resident")
                                                : fmt::format("layers 0-{} stay resident", first_streamed - 1);
  spdlog::info("weight store: this rank's {:.2f} GB of weights exceed its memory budget of {:.2f} GB: {} ({:.2f} GB "
               "with the embeddings and read-out), layers {}-{} stream through memory, each read while the layer "
               "before it computes (docs/weights.md, \"Larger than memory\")",
               total / 1e9, budget / 1e9, kept, resident / 1e9, first_streamed, t.layers.size() - 1);
  return std::make_shared<LayerStreamer>(store, t, first_streamed);
}

}  // namespace moetrace
