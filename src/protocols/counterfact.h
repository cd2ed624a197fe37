#pragma once
// CounterFact records (the JSON list of the ROME data set): only the fields the protocol uses.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace moetrace {

struct CounterFactRecord {
  std::int64_t case_id = 0;
  std::string prompt_template;  // contains "{}" where the subject goes
  std::string subject;
  std::string true_object;  // requested_rewrite.target_true.str
  std::string foil_object;  // requested_rewrite.target_new.str
  std::string relation_id;  // may be empty
};

// Bounds on what a data file may ask for (docs/config.md): the file's size and the length of each
// text field (a prompt template, subject or object is a sentence or less).
inline constexpr std::uint64_t kMaxCounterFactBytes = std::uint64_t{1} << 30;
inline constexpr std::size_t kMaxCounterFactStringBytes = 4096;

// Reads every record; a record without the needed fields is an error naming its index and case
// id, since a malformed data file should be fixed rather than silently thinned. `what` names where
// the path came from in messages about the file itself (e.g. "[data] counterfact").
std::vector<CounterFactRecord> read_counterfact(const std::filesystem::path& path,
                                                const std::string& what = "CounterFact file");

// Explicit case sets: {"discovery": [...], "validation": [...]} at the top level or under `key`
// (the paper's file keys them by model: "Qwen3", "Mixtral").
struct CaseIdSplit {
  std::vector<std::int64_t> discovery, validation;
};
CaseIdSplit read_case_id_split(const std::filesystem::path& path, const std::string& key,
                               const std::string& what = "case id file");

}  // namespace moetrace
