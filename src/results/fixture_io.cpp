#include "results/fixture_io.h"

#include <algorithm>
#include <cstdint>
#include <limits>

#include "results/h5_file.h"
#include "util/error.h"

namespace moetrace {
namespace {

// An int64 read from the file, range-checked before it is narrowed.
int to_int(std::int64_t v, const std::string& path, const std::string& what) {
  if (v < std::numeric_limits<int>::min() || v > std::numeric_limits<int>::max())
    fail_input("{}: {} = {} is out of range", path, what, v);
  return static_cast<int>(v);
}

}  // namespace

std::vector<FixtureFact> read_fixture_inputs(const std::string& path, int H) {
  h5::File f(path, h5::File::Mode::ReadOnly);
  if (!f.exists("facts")) fail_input("{}: no 'facts' group: not a moetrace fixture file", path);
  std::vector<std::string> names = f.children("facts");
  // Numeric order (facts/2 before facts/10).
  std::sort(names.begin(), names.end(), [](const std::string& a, const std::string& b) {
    return a.size() != b.size() ? a.size() < b.size() : a < b;
  });
  std::vector<FixtureFact> facts;
  for (const std::string& n : names) {
    FixtureFact fact;
    fact.group = "facts/" + n;
    const std::string g = fact.group + "/";
    auto ids = f.read_int(g + "ids");
    if (ids.shape.size() != 1 || ids.data.empty()) fail_input("{}: {}ids must be a non-empty 1-D array", path, g);
    for (std::int64_t id : ids.data) fact.ids.push_back(to_int(id, path, g + "ids"));
    auto subj = f.read_int(g + "subject");
    if (subj.data.size() != 2) fail_input("{}: {}subject must hold [s0, s1]", path, g);
    fact.subject_begin = to_int(subj.data[0], path, g + "subject");
    fact.subject_end = to_int(subj.data[1], path, g + "subject");
    const int T = static_cast<int>(fact.ids.size());
    if (fact.subject_begin < 0 || fact.subject_end <= fact.subject_begin || fact.subject_end > T)
      fail_input("{}: {}subject [{}, {}) is not a span of the {} prompt tokens", path, g, fact.subject_begin,
                 fact.subject_end, T);
    fact.true_id = to_int(f.attr_int(fact.group, "true_id"), path, fact.group + "@true_id");
    fact.foil_id = to_int(f.attr_int(fact.group, "foil_id"), path, fact.group + "@foil_id");
    if (f.exists(g + "noise")) {
      auto noise = f.read_double(g + "noise");
      const std::size_t span = fact.subject_end - fact.subject_begin;
      if (noise.shape.size() != 3 || noise.shape[1] != span || noise.shape[2] != static_cast<std::size_t>(H))
        fail_input("{}: {}noise must have shape [S, {}, {}]", path, g, span, H);
      const std::size_t per = span * H;
      for (std::size_t s = 0; s < noise.shape[0]; ++s)
        fact.noise.emplace_back(noise.data.begin() + s * per, noise.data.begin() + (s + 1) * per);
    }
    if (f.exists(g + "deactivate/experts")) {
      auto d = f.read_int(g + "deactivate/experts");
      if (d.shape.size() != 2 || d.shape[1] != 2) fail_input("{}: {}deactivate/experts must be [M, 2]", path, g);
      for (std::size_t i = 0; i < d.shape[0]; ++i)
        fact.deactivate.emplace_back(to_int(d.data[2 * i], path, g + "deactivate/experts"),
                                     to_int(d.data[2 * i + 1], path, g + "deactivate/experts"));
    }
    facts.push_back(std::move(fact));
  }
  return facts;
}

void write_replay_outputs(const std::string& path, const std::vector<FactOutputs>& facts,
                          const std::vector<std::pair<std::string, std::string>>& root_attrs) {
  h5::File f(path, h5::File::Mode::Truncate);
  for (const auto& [k, v] : root_attrs) f.set_attr("/", k, v);
  for (const FactOutputs& fact : facts) {
    for (const NamedArray& a : fact.floats) f.write_float(fact.group + "/" + a.name, a.shape, a.data.data());
    for (std::size_t i = 0; i < fact.ints.size(); ++i)
      f.write_int(fact.group + "/" + fact.ints[i].first, fact.int_shapes[i], fact.ints[i].second.data());
    f.create_groups(fact.group + "/clean");
    f.set_attr(fact.group + "/clean", "contrast", fact.contrast);
  }
  f.flush();
}

}  // namespace moetrace
