#include "protocols/counterfact.h"

#include <limits>
#include <set>

#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/input_file.h"
#include "util/json_input.h"

namespace moetrace {
namespace {

nlohmann::json parse_file(const std::filesystem::path& path, const std::string& what) {
  // Every library exception (syntax, 1e400, duplicate keys) becomes an InputError naming the file.
  return parse_json_input(read_input_file(path, what, kMaxCounterFactBytes), path.string());
}

// A case id: an integer that fits int64 (nlohmann keeps larger ones as unsigned).
bool read_case_id(const nlohmann::json& v, std::int64_t& out) {
  if (v.is_number_unsigned()) {
    if (v.get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return false;
    out = static_cast<std::int64_t>(v.get<std::uint64_t>());
    return true;
  }
  if (!v.is_number_integer()) return false;
  out = v.get<std::int64_t>();
  return true;
}

const nlohmann::json& field(const nlohmann::json& obj, const char* name, const std::string& where) {
  if (!obj.is_object() || !obj.contains(name)) fail_input("{}: missing field '{}'", where, name);
  return obj[name];
}

std::string string_field(const nlohmann::json& obj, const char* name, const std::string& where) {
  const auto& v = field(obj, name, where);
  if (!v.is_string()) fail_input("{}: field '{}' must be a string", where, name);
  const auto& s = v.get_ref<const std::string&>();
  if (s.size() > kMaxCounterFactStringBytes)
    fail_input("{}: field '{}' is {} bytes long, more than the {} allowed: \"{}\"", where, name, s.size(),
               kMaxCounterFactStringBytes, shorten(s));
  return s;
}

}  // namespace

std::vector<CounterFactRecord> read_counterfact(const std::filesystem::path& path, const std::string& what) {
  const nlohmann::json j = parse_file(path, what);
  if (!j.is_array()) fail_input("{}: expected a JSON list of CounterFact records", path.string());
  std::vector<CounterFactRecord> out;
  std::set<std::int64_t> seen;
  for (std::size_t i = 0; i < j.size(); ++i) {
    const auto& r = j[i];
    std::string where = fmt::format("{}: record {}", path.string(), i);
    const auto& id = field(r, "case_id", where);
    CounterFactRecord rec;
    if (!read_case_id(id, rec.case_id))
      fail_input("{}: case_id must be an integer in the range of int64, got {}", where, shorten(id.dump()));
    where += fmt::format(" (case_id {})", rec.case_id);
    if (!seen.insert(rec.case_id).second) fail_input("{}: duplicate case_id", where);
    const auto& rw = field(r, "requested_rewrite", where);
    rec.prompt_template = string_field(rw, "prompt", where + ".requested_rewrite");
    rec.subject = string_field(rw, "subject", where + ".requested_rewrite");
    rec.true_object = string_field(field(rw, "target_true", where + ".requested_rewrite"), "str",
                                   where + ".requested_rewrite.target_true");
    rec.foil_object = string_field(field(rw, "target_new", where + ".requested_rewrite"), "str",
                                   where + ".requested_rewrite.target_new");
    if (rw.contains("relation_id") && rw["relation_id"].is_string())
      rec.relation_id = string_field(rw, "relation_id", where + ".requested_rewrite");
    out.push_back(std::move(rec));
  }
  return out;
}

CaseIdSplit read_case_id_split(const std::filesystem::path& path, const std::string& key, const std::string& what) {
  const nlohmann::json j = parse_file(path, what);
  const nlohmann::json* obj = &j;
  std::string where = path.string();
  if (!key.empty()) {
    if (!j.is_object() || !j.contains(key)) fail_input("{}: no entry '{}' (case_ids_key)", where, shorten(key));
    obj = &j[key];
    where += ":" + key;
  }
  CaseIdSplit s;
  for (auto [name, dst] : {std::pair{"discovery", &s.discovery}, std::pair{"validation", &s.validation}}) {
    const auto& arr = field(*obj, name, where);
    if (!arr.is_array()) fail_input("{}: '{}' must be a list of case ids", where, name);
    for (const auto& v : arr) {
      std::int64_t id = 0;
      if (!read_case_id(v, id)) fail_input("{}: '{}' must hold integer case ids (int64), got {}", where, name, shorten(v.dump()));
      dst->push_back(id);
    }
  }
  return s;
}

}  // namespace moetrace
