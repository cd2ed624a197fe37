// Expert-parallel replay in-process (library calls, not the CLI) on the group of this mpirun job
// (2, 3 and 4 ranks): every fixture is replayed with its experts sharded over the ranks and compared
// bit for bit with a one-rank replay computed on rank 0. 3 ranks split Mixtral's 8 experts 3/3/2 and
// the 16 of Qwen3-MoE and OLMoE 6/5/5 (uneven blocks).
#define BOOST_TEST_MODULE ep_replay
#include <boost/test/unit_test.hpp>

#include <cstring>
#include <optional>

#include "backend/backend.h"
#include "comm/errors.h"
#include "comm/expert_parallel_exchange.h"
#include "engine/device_model.h"
#include "model/model_weights.h"
#include "mpi_test_support.h"
#include "protocols/replay.h"
#include "support/test_paths.h"

using namespace moetrace;
using test::everywhere;

using test::MpiFixture;
BOOST_TEST_GLOBAL_FIXTURE(MpiFixture);

namespace {

const std::vector<std::string> kModels = {"mixtral-tiny", "qwen3moe-tiny", "olmoe-tiny"};

struct Replayed {
  std::vector<FactOutputs> outputs;
  std::uint64_t rows_received = 0;
};

// With `group` == nullptr: the one-rank reference (every expert, no exchange). Otherwise this rank's
// share of an EP replay; `exchange` false leaves out the combine (the slots of other ranks stay zero).
Replayed replay(const ModelWeights& weights, const std::vector<FixtureFact>& facts, Communicator* group,
                PatchMode mode, bool traces, bool exchange = true) {
  auto backend = make_cpu_backend();
  const int E = weights.config.num_experts;
  DeviceModel model = group ? upload_model(weights, *backend, expert_block(E, group->rank(), group->size()))
                            : upload_model(weights, *backend);
  std::optional<ExpertParallelExchange> ex;
  if (group && exchange) ex.emplace(*group);
  Engine engine(model, *backend, ex ? &*ex : nullptr);
  Replayed r;
  for (const FixtureFact& f : facts) r.outputs.push_back(replay_fact(engine, f, {mode, traces}));
  if (ex) r.rows_received = ex->rows_received();
  return r;
}

bool same_bits(const void* a, const void* b, std::size_t bytes) { return bytes == 0 || std::memcmp(a, b, bytes) == 0; }

// Every dataset of every fact: same names, shapes, and bytes.
std::vector<std::string> differences(const std::vector<FactOutputs>& ref, const std::vector<FactOutputs>& got) {
  std::vector<std::string> out;
  if (ref.size() != got.size()) return {fmt::format("{} facts vs {}", got.size(), ref.size())};
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const FactOutputs &a = ref[i], &b = got[i];
    if (a.group != b.group) out.push_back(fmt::format("fact {}: group {} vs {}", i, b.group, a.group));
    if (!same_bits(&a.contrast, &b.contrast, sizeof a.contrast))
      out.push_back(fmt::format("{}: contrast {} vs {}", a.group, b.contrast, a.contrast));
    if (a.floats.size() != b.floats.size()) {
      out.push_back(fmt::format("{}: {} float datasets vs {}", a.group, b.floats.size(), a.floats.size()));
      continue;
    }
    for (std::size_t j = 0; j < a.floats.size(); ++j) {
      const NamedArray &x = a.floats[j], &y = b.floats[j];
      if (x.name != y.name || x.shape != y.shape || x.data.size() != y.data.size() ||
          !same_bits(x.data.data(), y.data.data(), x.data.size() * sizeof(float))) {
        std::size_t first = 0;
        while (first < std::min(x.data.size(), y.data.size()) &&
               same_bits(&x.data[first], &y.data[first], sizeof(float)))
          ++first;
        out.push_back(fmt::format("{}/{}: differs (first at element {} of {})", a.group, x.name, first, x.data.size()));
      }
    }
    if (a.ints != b.ints || a.int_shapes != b.int_shapes) out.push_back(a.group + ": integer datasets differ");
  }
  return out;
}

struct Outcome {
  std::int64_t differing = 0;  // on rank 0, shared with every rank
  std::int64_t datasets = 0;
  std::int64_t rows_received = 0;  // summed over ranks
};

// Collective: the EP replay on every rank, the reference and the comparison on rank 0.
Outcome compare_with_one_rank(Communicator& comm, const std::string& m, PatchMode mode, bool traces, bool exchange) {
  const auto dir = test::fixtures_dir();
  Outcome o;
  std::string error;
  Replayed ep, ref;
  try {
    const ModelWeights weights = load_model(dir / m);
    const auto facts = read_fixture_inputs((dir / (m + ".golden.h5")).string(), weights.config.hidden_size);
    ep = replay(weights, facts, &comm, mode, traces, exchange);
    if (comm.rank() == 0) ref = replay(weights, facts, nullptr, mode, traces);
  } catch (const std::exception& e) {
    error = e.what();  // agreed on below, before anything is asserted
  }
  check_all(comm, error.empty(), error);
  if (comm.rank() == 0) {
    const auto diffs = differences(ref.outputs, ep.outputs);
    for (const auto& f : ref.outputs) o.datasets += static_cast<std::int64_t>(f.floats.size() + f.ints.size());
    o.differing = static_cast<std::int64_t>(diffs.size());
    for (std::size_t i = 0; i < diffs.size() && i < 10; ++i) BOOST_TEST_MESSAGE(m << ": " << diffs[i]);
  }
  std::int64_t shared[2] = {o.differing, o.datasets};
  comm.allreduce_sum(shared, 2);  // only rank 0 contributes
  o.differing = shared[0];
  o.datasets = shared[1];
  o.rows_received = static_cast<std::int64_t>(ep.rows_received);
  comm.allreduce_sum(&o.rows_received, 1);
  return o;
}

}  // namespace

BOOST_AUTO_TEST_CASE(ep_replay_of_every_fixture_is_bit_identical_to_one_rank) {
  auto comm = make_world_communicator();
  BOOST_TEST_MESSAGE("EP group of " << comm->size() << " ranks");
  for (const std::string& m : kModels) {
    std::optional<Outcome> o;
    std::string error;
    try {
      o = compare_with_one_rank(*comm, m, PatchMode::FastPath, true, true);
    } catch (const CollectiveError& e) {
      error = e.what();  // thrown on every rank together
    }
    BOOST_TEST(error.empty(), m << ": " << error);
    if (!o) continue;
    if (comm->rank() == 0)
      BOOST_TEST_MESSAGE(m << ": " << o->datasets << " datasets, " << o->differing << " differ; "
                           << o->rows_received << " slot rows exchanged");
    BOOST_TEST(o->datasets > 0);
    BOOST_TEST(o->differing == 0, m << ": " << o->differing << " datasets differ from the one-rank replay");
    BOOST_TEST(o->rows_received > 0);
  }
}

BOOST_AUTO_TEST_CASE(full_recompute_is_bit_identical_too) {
  auto comm = make_world_communicator();
  std::optional<Outcome> o;
  std::string error;
  try {
    o = compare_with_one_rank(*comm, "qwen3moe-tiny", PatchMode::FullRecompute, true, true);
  } catch (const CollectiveError& e) {
    error = e.what();
  }
  BOOST_TEST(error.empty(), error);
  if (o) BOOST_TEST(o->differing == 0);
}

// The comparison can fail: without the combine, each rank sums only its own experts' updates.
BOOST_AUTO_TEST_CASE(without_the_exchange_the_outputs_differ) {
  auto comm = make_world_communicator();
  std::optional<Outcome> o;
  std::string error;
  try {
    o = compare_with_one_rank(*comm, "mixtral-tiny", PatchMode::FastPath, false, false);
  } catch (const CollectiveError& e) {
    error = e.what();
  }
  BOOST_TEST(error.empty(), error);
  if (o) BOOST_TEST(o->differing > 0);
}
