#include "support/fixture_replay.h"

#include "backend/backend_registry.h"
#include "engine/device_model.h"
#include "model/model_weights.h"
#include "protocols/replay.h"

namespace moetrace::test {

std::uint64_t replay_fixture(const std::string& backend_name, const std::filesystem::path& model_dir,
                             const std::filesystem::path& fixture, const std::filesystem::path& out, PatchMode mode,
                             bool traces) {
  ModelWeights weights = load_model(model_dir);
  auto backend = make_backend(backend_name);
  std::uint64_t steps = 0;
  {  // the engine and its device weights go before the backend
    DeviceModel model = upload_model(weights, *backend);
    BOOST_TEST_MESSAGE(backend_name << ": " << model_dir.filename().string() << " weights on the device: "
                                    << backend->weight_bytes() << " bytes");
    Engine engine(model, *backend);
    std::vector<FactOutputs> outputs;
    for (const FixtureFact& fact : read_fixture_inputs(fixture.string(), weights.config.hidden_size))
      outputs.push_back(replay_fact(engine, fact, {mode, traces}));
    write_replay_outputs(out.string(), outputs, {});
    steps = engine.layer_token_steps();
  }
  return steps;
}

}  // namespace moetrace::test
