#pragma once
// Compares a replay file against a golden fixture: every golden dataset under the given prefixes
// must exist in ours with the same shape; floats must satisfy
// max|ours - golden| <= rel_tol * max|golden| (per dataset), integers must be equal.
#include <string>
#include <vector>

namespace moetrace::test {

struct CompareReport {
  int datasets_checked = 0;
  std::vector<std::string> failures;  // one line per failing dataset, naming it
  double worst_ratio = 0;             // max over datasets of max|diff| / max|golden|
  std::string worst_dataset;
};

// prefixes are matched against the dataset path after "facts/<n>/" ("clean/", "trace/", ...).
CompareReport compare_with_golden(const std::string& golden, const std::string& ours,
                                  const std::vector<std::string>& prefixes, double rel_tol);

// Compares the same datasets of two replay files (e.g. fast path vs full recompute).
CompareReport compare_files(const std::string& a, const std::string& b, const std::vector<std::string>& datasets_suffixes,
                            double rel_tol);

}  // namespace moetrace::test
