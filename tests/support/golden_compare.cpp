#include "support/golden_compare.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "results/h5_file.h"

namespace moetrace::test {
namespace {

bool is_integer_dataset(const std::string& name) { return name.ends_with("topk_idx"); }

void compare_dataset(const h5::File& ref, const h5::File& ours, const std::string& path, double rel_tol,
                     CompareReport& report) {
  ++report.datasets_checked;
  if (!ours.exists(path)) {
    report.failures.push_back(path + ": missing in the replay");
    return;
  }
  if (ref.shape(path) != ours.shape(path)) {
    report.failures.push_back(fmt::format("{}: shape [{}] vs golden [{}]", path, fmt::join(ours.shape(path), ","),
                                          fmt::join(ref.shape(path), ",")));
    return;
  }
  if (is_integer_dataset(path)) {
    if (ref.read_int(path).data != ours.read_int(path).data) report.failures.push_back(path + ": integers differ");
    return;
  }
  auto g = ref.read_double(path), o = ours.read_double(path);
  double max_ref = 0, max_diff = 0;
  for (std::size_t i = 0; i < g.data.size(); ++i) {
    max_ref = std::max(max_ref, std::abs(g.data[i]));
    const double d = std::abs(g.data[i] - o.data[i]);
    max_diff = std::isnan(d) ? INFINITY : std::max(max_diff, d);
  }
  const double ratio = max_ref > 0 ? max_diff / max_ref : max_diff;
  if (ratio > report.worst_ratio) {
    report.worst_ratio = ratio;
    report.worst_dataset = path;
  }
  if (!(max_diff <= rel_tol * max_ref))
    report.failures.push_back(fmt::format("{}: max|diff| = {:.3g} > {:.1g} * max|golden| = {:.3g}", path, max_diff,
                                          rel_tol, rel_tol * max_ref));
}

void walk(const h5::File& f, const std::string& group, std::vector<std::string>& out) {
  for (const std::string& c : f.children(group)) {
    const std::string p = group + "/" + c;
    try {
      f.children(p);
      walk(f, p, out);
    } catch (...) {
      out.push_back(p);
    }
  }
}

}  // namespace

CompareReport compare_with_golden(const std::string& golden, const std::string& ours,
                                  const std::vector<std::string>& prefixes, double rel_tol) {
  h5::File ref(golden, h5::File::Mode::ReadOnly), mine(ours, h5::File::Mode::ReadOnly);
  CompareReport report;
  for (const std::string& fact : ref.children("/facts")) {
    const std::string base = "/facts/" + fact;
    std::vector<std::string> datasets;
    walk(ref, base, datasets);
    for (const std::string& d : datasets) {
      const std::string rel = d.substr(base.size() + 1);
      if (std::none_of(prefixes.begin(), prefixes.end(), [&](const std::string& p) { return rel.starts_with(p); }))
        continue;
      compare_dataset(ref, mine, d, rel_tol, report);
    }
    if (std::any_of(prefixes.begin(), prefixes.end(), [](const std::string& p) { return p == "clean/"; })) {
      ++report.datasets_checked;
      const double g = ref.attr_double(base + "/clean", "contrast");
      const double o = mine.has_attr(base + "/clean", "contrast") ? mine.attr_double(base + "/clean", "contrast") : NAN;
      if (!(std::abs(g - o) <= rel_tol * std::max(1.0, std::abs(g))))
        report.failures.push_back(fmt::format("{}/clean@contrast: {} vs golden {}", base, o, g));
    }
  }
  return report;
}

CompareReport compare_files(const std::string& a, const std::string& b, const std::vector<std::string>& suffixes,
                            double rel_tol) {
  h5::File fa(a, h5::File::Mode::ReadOnly), fb(b, h5::File::Mode::ReadOnly);
  CompareReport report;
  for (const std::string& fact : fa.children("/facts"))
    for (const std::string& s : suffixes) compare_dataset(fa, fb, "/facts/" + fact + "/" + s, rel_tol, report);
  return report;
}

}  // namespace moetrace::test
