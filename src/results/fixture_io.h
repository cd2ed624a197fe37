#pragma once
// The layout of the conformance fixtures (../shared/fixtures/README.md): reading a fixture's
// inputs, and writing what `moetrace replay` computes under the same dataset names and shapes.
#include <string>
#include <utility>
#include <vector>

namespace moetrace {

// A float array with its shape, as written to HDF5.
struct NamedArray {
  std::string name;  // path relative to the fact's group, e.g. "clean/hidden"
  std::vector<std::size_t> shape;
  std::vector<float> data;
};

struct FixtureFact {
  std::string group;  // "facts/<n>"
  std::vector<int> ids;
  int subject_begin = 0, subject_end = 0;
  int true_id = -1, foil_id = -1;
  std::vector<std::vector<float>> noise;  // per sample [(s1 - s0) * H]
  std::vector<std::pair<int, int>> deactivate;  // (layer, expert)
};

struct FactOutputs {
  std::string group;
  std::vector<NamedArray> floats;
  std::vector<std::pair<std::string, std::vector<int>>> ints;  // name -> data (shape in int_shapes)
  std::vector<std::vector<std::size_t>> int_shapes;
  double contrast = 0;  // written as the attribute `contrast` of <group>/clean
};

// Reads every facts/<n> group's inputs; checks shapes against hidden_size, naming file and dataset.
std::vector<FixtureFact> read_fixture_inputs(const std::string& path, int hidden_size);

// Writes the outputs of every fact into a new file (overwriting it) with root attributes copied
// from the fixture where they describe the inputs.
void write_replay_outputs(const std::string& path, const std::vector<FactOutputs>& facts,
                          const std::vector<std::pair<std::string, std::string>>& root_attrs);

}  // namespace moetrace
