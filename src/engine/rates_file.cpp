// The rates file of calibration.h: {"moetrace_rates": 1, "entries": [ ... ]}, read as hostile input.
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <set>
#include <system_error>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "engine/calibration.h"
#include "util/error.h"
#include "util/input_file.h"
#include "util/json_input.h"

namespace moetrace {
namespace {

constexpr int kRatesFormat = 1;
constexpr std::uintmax_t kMaxRatesBytes = 64ull << 20;
using ojson = nlohmann::ordered_json;

// Checked reads; every error is "<file>: <key path>: <problem>".
class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}

  [[noreturn]] void fail(const std::string& key, const std::string& problem) const {
    fail_input("{}: {}: {}", file_, key, problem);
  }
  // `v` is an object with exactly the keys `names`.
  void object(const nlohmann::json& v, const std::string& key, std::initializer_list<const char*> names) const {
    if (!v.is_object()) fail(key, "not an object");
    const std::set<std::string> allowed(names.begin(), names.end());
    for (const auto& [name, value] : v.items())
      if (!allowed.count(name)) fail(sub(key, name), "unknown key");
    for (const char* name : names)
      if (!v.contains(name)) fail(sub(key, name), "missing");
  }
  double number(const nlohmann::json& v, const std::string& key, bool zero_ok) const {
    const bool ok = v.is_number() && std::isfinite(v.get<double>()) && (zero_ok ? v.get<double>() >= 0 : v.get<double>() > 0);
    if (!ok) fail(key, fmt::format("not a {} number: {}", zero_ok ? "non-negative" : "positive", json_for_message(v)));
    return v.get<double>();
  }
  int integer(const nlohmann::json& v, const std::string& key, int lo, int hi) const {
    if (!v.is_number_integer() || v.get<std::int64_t>() < lo || v.get<std::int64_t>() > hi)
      fail(key, fmt::format("not an integer in [{}, {}]: {}", lo, hi, json_for_message(v)));
    return static_cast<int>(v.get<std::int64_t>());
  }
  std::string string(const nlohmann::json& v, const std::string& key) const {
    if (!v.is_string()) fail(key, fmt::format("not a string: {}", json_for_message(v)));
    return v.get<std::string>();
  }
  const nlohmann::json& array(const nlohmann::json& v, const std::string& key) const {
    if (!v.is_array()) fail(key, fmt::format("not a list: {}", json_for_message(v)));
    if (v.empty()) fail(key, "empty");
    return v;
  }
  static std::string sub(const std::string& key, const std::string& name) { return key.empty() ? name : key + "." + name; }
  static std::string item(const std::string& key, std::size_t i) { return fmt::format("{}[{}]", key, i); }

 private:
  std::string file_;
};

RateKey read_key(const Reader& r, const nlohmann::json& v, const std::string& key) {
  r.object(v, key, {"host", "cpu_model", "backend", "threads", "versions", "shape"});
  RateKey k;
  k.host = r.string(v["host"], Reader::sub(key, "host"));
  k.cpu_model = r.string(v["cpu_model"], Reader::sub(key, "cpu_model"));
  k.backend = r.string(v["backend"], Reader::sub(key, "backend"));
  k.threads = r.integer(v["threads"], Reader::sub(key, "threads"), 1, 1 << 20);
  k.versions = r.string(v["versions"], Reader::sub(key, "versions"));
  k.shape = r.string(v["shape"], Reader::sub(key, "shape"));
  return k;
}

RatePoint read_point(const Reader& r, const nlohmann::json& v, const std::string& key) {
  r.object(v, key, {"kind", "rows", "seconds_per_step", "samples", "spread"});
  RatePoint p;
  const std::string kind = r.string(v["kind"], Reader::sub(key, "kind"));
  if (kind != "prepare" && kind != "patched") r.fail(Reader::sub(key, "kind"), "not \"prepare\" or \"patched\": " + kind);
  p.prepare = kind == "prepare";
  p.rows = r.number(v["rows"], Reader::sub(key, "rows"), false);
  p.seconds_per_step = r.number(v["seconds_per_step"], Reader::sub(key, "seconds_per_step"), false);
  p.samples = r.integer(v["samples"], Reader::sub(key, "samples"), 1, 1 << 30);
  p.spread = r.number(v["spread"], Reader::sub(key, "spread"), true);
  return p;
}

// Points of each kind in strictly ascending rows (interpolation needs distinct neighbours).
std::vector<RatePoint> read_points(const Reader& r, const nlohmann::json& v, const std::string& key) {
  std::vector<RatePoint> points;
  double last_rows[2] = {0, 0};
  const std::size_t n = r.array(v, key).size();
  for (std::size_t i = 0; i < n; ++i) {
    const std::string at = Reader::item(key, i);
    points.push_back(read_point(r, v[i], at));
    double& last = last_rows[points.back().prepare ? 1 : 0];
    if (points.back().rows <= last) r.fail(Reader::sub(at, "rows"), "not above the previous point's rows of its kind");
    last = points.back().rows;
  }
  return points;
}

CalibratedRates read_entry(const Reader& r, const nlohmann::json& v, const std::string& key) {
  r.object(v, key, {"key", "points", "seconds_per_layer_pass", "calibration_seconds", "source", "measured_at"});
  CalibratedRates c;
  c.key = read_key(r, v["key"], Reader::sub(key, "key"));
  c.points = read_points(r, v["points"], Reader::sub(key, "points"));
  c.seconds_per_layer_pass = r.number(v["seconds_per_layer_pass"], Reader::sub(key, "seconds_per_layer_pass"), true);
  c.calibration_seconds = r.number(v["calibration_seconds"], Reader::sub(key, "calibration_seconds"), true);
  c.source = r.string(v["source"], Reader::sub(key, "source"));
  c.measured_at = r.string(v["measured_at"], Reader::sub(key, "measured_at"));
  return c;
}

ojson entry_json(const CalibratedRates& c) {
  ojson points = ojson::array();
  for (const RatePoint& p : c.points)
    points.push_back({{"kind", p.prepare ? "prepare" : "patched"}, {"rows", p.rows},
                      {"seconds_per_step", p.seconds_per_step}, {"samples", p.samples}, {"spread", p.spread}});
  const RateKey& k = c.key;
  return {{"key", {{"host", k.host}, {"cpu_model", k.cpu_model}, {"backend", k.backend}, {"threads", k.threads},
                   {"versions", k.versions}, {"shape", k.shape}}},
          {"points", points},
          {"seconds_per_layer_pass", c.seconds_per_layer_pass},
          {"calibration_seconds", c.calibration_seconds},
          {"source", c.source},
          {"measured_at", c.measured_at}};
}

}  // namespace

std::filesystem::path default_rates_path() {
  if (const char* env = std::getenv("MOETRACE_RATES"); env && *env) return env;
  const char* home = std::getenv("HOME");
  if (!home || !*home) fail_input("neither MOETRACE_RATES nor HOME is set: no place for the rates file");
  return std::filesystem::path(home) / ".cache" / "moetrace" / "rates.json";
}

std::vector<CalibratedRates> load_rates(const std::filesystem::path& path) {
  if (input_path_kind(path, "rates file") == PathKind::Missing) return {};
  const std::string file = path.string();
  const nlohmann::json j = parse_json_input(read_input_file(path, "rates file", kMaxRatesBytes), file);
  const Reader r(file);
  r.object(j, "(top level)", {"moetrace_rates", "entries"});
  r.integer(j["moetrace_rates"], "moetrace_rates", kRatesFormat, kRatesFormat);
  if (!j["entries"].is_array()) r.fail("entries", "not a list: " + json_for_message(j["entries"]));
  std::vector<CalibratedRates> list;
  for (std::size_t i = 0; i < j["entries"].size(); ++i) {
    const std::string key = Reader::item("entries", i);
    CalibratedRates c = read_entry(r, j["entries"][i], key);
    if (find_rates(list, c.key)) r.fail(Reader::sub(key, "key"), "the same key as an earlier entry");
    list.push_back(std::move(c));
  }
  return list;
}

void save_rates(const std::filesystem::path& path, const std::vector<CalibratedRates>& list) {
  ojson j = {{"moetrace_rates", kRatesFormat}, {"entries", ojson::array()}};
  for (const CalibratedRates& c : list) j["entries"].push_back(entry_json(c));
  std::error_code ec;
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path(), ec);
  if (ec) fail_input("{}: cannot create its folder: {}", path.string(), ec.message());
  const std::filesystem::path tmp = path.string() + fmt::format(".tmp.{}", ::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << j.dump(2) << '\n';
    out.flush();
    if (!out) {
      std::filesystem::remove(tmp, ec);
      fail_input("{}: cannot write the rates file", tmp.string());
    }
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
    fail_input("{}: cannot replace the rates file: {}", path.string(), ec.message());
  }
}

}  // namespace moetrace
