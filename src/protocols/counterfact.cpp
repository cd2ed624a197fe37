#include "protocols/counterfact.h"

#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "util/error.h"

namespace moetrace {
namespace {

nlohmann::json parse_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) fail_input("cannot open {}: no such file or not readable", path.string());
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    fail_input("{}: malformed JSON: {}", path.string(), e.what());
  }
}

const nlohmann::json& field(const nlohmann::json& obj, const char* name, const std::string& where) {
  if (!obj.is_object() || !obj.contains(name)) fail_input("{}: missing field '{}'", where, name);
  return obj[name];
}

std::string string_field(const nlohmann::json& obj, const char* name, const std::string& where) {
  const auto& v = field(obj, name, where);
  if (!v.is_string()) fail_input("{}: field '{}' must be a string", where, name);
  return v.get<std::string>();
}

}  // namespace

std::vector<CounterFactRecord> read_counterfact(const std::filesystem::path& path) {
  const nlohmann::json j = parse_file(path);
  if (!j.is_array()) fail_input("{}: expected a JSON list of CounterFact records", path.string());
  std::vector<CounterFactRecord> out;
  std::set<std::int64_t> seen;
  for (std::size_t i = 0; i < j.size(); ++i) {
    const auto& r = j[i];
    std::string where = fmt::format("{}: record {}", path.string(), i);
    const auto& id = field(r, "case_id", where);
    if (!id.is_number_integer()) fail_input("{}: case_id must be an integer", where);
    CounterFactRecord rec;
    rec.case_id = id.get<std::int64_t>();
    where += fmt::format(" (case_id {})", rec.case_id);
    if (!seen.insert(rec.case_id).second) fail_input("{}: duplicate case_id", where);
    const auto& rw = field(r, "requested_rewrite", where);
    rec.prompt_template = string_field(rw, "prompt", where + ".requested_rewrite");
    rec.subject = string_field(rw, "subject", where + ".requested_rewrite");
    rec.true_object = string_field(field(rw, "target_true", where + ".requested_rewrite"), "str",
                                   where + ".requested_rewrite.target_true");
    rec.foil_object = string_field(field(rw, "target_new", where + ".requested_rewrite"), "str",
                                   where + ".requested_rewrite.target_new");
    if (rw.contains("relation_id") && rw["relation_id"].is_string()) rec.relation_id = rw["relation_id"].get<std::string>();
    out.push_back(std::move(rec));
  }
  return out;
}

CaseIdSplit read_case_id_split(const std::filesystem::path& path, const std::string& key) {
  const nlohmann::json j = parse_file(path);
  const nlohmann::json* obj = &j;
  std::string where = path.string();
  if (!key.empty()) {
    if (!j.is_object() || !j.contains(key)) fail_input("{}: no entry '{}' (case_ids_key)", where, key);
    obj = &j[key];
    where += ":" + key;
  }
  CaseIdSplit s;
  for (auto [name, dst] : {std::pair{"discovery", &s.discovery}, std::pair{"validation", &s.validation}}) {
    const auto& arr = field(*obj, name, where);
    if (!arr.is_array()) fail_input("{}: '{}' must be a list of case ids", where, name);
    for (const auto& v : arr) {
      if (!v.is_number_integer()) fail_input("{}: '{}' must hold integer case ids", where, name);
      dst->push_back(v.get<std::int64_t>());
    }
  }
  return s;
}

}  // namespace moetrace
