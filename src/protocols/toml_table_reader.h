#pragma once
// Reading one [section] of a TOML config: typed keys with range checks (integers before narrowing,
// floats finite), choices, bounded arrays, and unknown keys rejected by name. Shared by the
// configs of `moetrace run` (run_config.cpp) and `moetrace localize` (localize_config.cpp).
#include <cstdint>
#include <filesystem>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <toml++/toml.h>

#include "util/error.h"
#include "util/input_file.h"

namespace moetrace {

// Reads the keys of one table, checking types and rejecting keys nobody asked for.
class TableReader {
 public:
  TableReader(const toml::table* table, std::string name, std::string origin)
      : table_(table), name_(std::move(name)), origin_(std::move(origin)) {}

  std::string where(const std::string& key) const { return fmt::format("{}: [{}] {}", origin_, name_, key); }
  static constexpr std::size_t kMaxArray = 64;

  // A value as written in TOML, shortened for messages.
  static std::string shown(const toml::node& n) {
    std::ostringstream ss;
    n.visit([&](const auto& v) { ss << v; });
    return shorten(ss.str());
  }

  const toml::node* get(const std::string& key) {
    known_.insert(key);
    return table_ ? table_->get(key) : nullptr;
  }

  void string(const std::string& key, std::string& out) {
    if (auto* n = get(key)) {
      if (!n->is_string()) fail_input("{} must be a string, got {}", where(key), shown(*n));
      out = n->as_string()->get();
      if (out.size() > 4096) fail_input("{} is {} bytes long, more than the 4096 allowed: {}", where(key), out.size(), shorten(out));
    }
  }
  void path(const std::string& key, std::filesystem::path& out, const std::filesystem::path& base) {
    std::string s;
    string(key, s);
    if (!s.empty()) out = std::filesystem::path(s).is_absolute() ? std::filesystem::path(s) : base / s;
  }
  void boolean(const std::string& key, bool& out) {
    if (auto* n = get(key)) {
      if (!n->is_boolean()) fail_input("{} must be true or false", where(key));
      out = n->as_boolean()->get();
    }
  }
  // An integer in [min, max] and in the range of Int, checked before narrowing.
  template <typename Int>
  void integer(const std::string& key, Int& out, std::int64_t min, std::int64_t max) {
    if (auto* n = get(key)) {
      if (!n->is_integer()) fail_input("{} must be an integer, got {}", where(key), shown(*n));
      const std::int64_t v = n->as_integer()->get();
      const std::int64_t hi = std::cmp_less(std::numeric_limits<Int>::max(), max)
                                  ? static_cast<std::int64_t>(std::numeric_limits<Int>::max()) : max;
      const std::int64_t lo = std::cmp_greater(std::numeric_limits<Int>::min(), min)
                                  ? static_cast<std::int64_t>(std::numeric_limits<Int>::min()) : min;
      if (v < lo || v > hi) fail_input("{} must lie in [{}, {}], got {}", where(key), lo, hi, v);
      out = static_cast<Int>(v);
    }
  }
  // A finite number in [min, max] (NaN fails every comparison, so the check is written to reject it).
  void number(const std::string& key, double& out, double min, double max) {
    if (auto* n = get(key)) {
      if (!n->is_number()) fail_input("{} must be a number, got {}", where(key), shown(*n));
      const double v = n->is_integer() ? static_cast<double>(n->as_integer()->get()) : n->as_floating_point()->get();
      if (!(v >= min && v <= max)) fail_input("{} must be a finite number in [{}, {}], got {}", where(key), min, max, v);
      out = v;
    }
  }
  template <typename T>
  void choice(const std::string& key, T& out, const std::map<std::string, T>& options) {
    std::string s;
    if (!get(key)) return;
    string(key, s);
    auto it = options.find(s);
    if (it == options.end()) {
      std::vector<std::string> names;
      for (const auto& [k, v] : options) names.push_back(k);
      fail_input("{} = '{}' is not one of: {}", where(key), shorten(s), fmt::join(names, ", "));
    }
    out = it->second;
  }
  // Arrays of at most kMaxArray elements; numbers finite in [min, max], integers in [min, max] too.
  template <typename T>
  void array(const std::string& key, std::vector<T>& out, double min = 0, double max = 0) {
    auto* n = get(key);
    if (!n) return;
    if (!n->is_array()) fail_input("{} must be an array, got {}", where(key), shown(*n));
    if (n->as_array()->size() > kMaxArray)
      fail_input("{} has {} elements, more than the {} allowed", where(key), n->as_array()->size(), kMaxArray);
    out.clear();
    for (const toml::node& e : *n->as_array()) {
      if constexpr (std::is_same_v<T, std::string>) {
        if (!e.is_string()) fail_input("{} must be an array of strings", where(key));
        out.push_back(e.as_string()->get());
      } else if constexpr (std::is_floating_point_v<T>) {
        if (!e.is_number()) fail_input("{} must be an array of numbers", where(key));
        const double v = e.is_integer() ? static_cast<double>(e.as_integer()->get()) : e.as_floating_point()->get();
        if (!(v >= min && v <= max))
          fail_input("{}: every element must be a finite number in [{}, {}], got {}", where(key), min, max, v);
        out.push_back(static_cast<T>(v));
      } else {
        if (!e.is_integer()) fail_input("{} must be an array of integers", where(key));
        const std::int64_t v = e.as_integer()->get();
        if (!(v >= min && static_cast<double>(v) <= max))
          fail_input("{}: every element must be an integer in [{}, {}], got {}", where(key), min, max, v);
        out.push_back(static_cast<T>(v));
      }
    }
  }

  void reject_unknown() const {
    if (!table_) return;
    for (const auto& [k, v] : *table_)
      if (!known_.count(std::string(k.str())))
        fail_input("{}: unknown key '{}' in [{}] (see docs/config.md for the keys)", origin_, shorten(k.str()), name_);
  }

 private:
  const toml::table* table_;
  std::string name_, origin_;
  std::set<std::string> known_;
};

// The text as TOML; syntax errors are InputErrors naming origin, line and column.
inline toml::table parse_toml(const std::string& text, const std::string& origin) {
  try {
    return toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    fail_input("{}:{}:{}: invalid TOML: {}", origin, e.source().begin.line, e.source().begin.column, e.description());
  } catch (const std::exception& e) {  // anything else toml++ may throw while reading the text
    fail_input("{}: invalid TOML: {}", origin, e.what());
  }
}

// Every top-level key must be one of `sections` and a table.
inline void check_sections(const toml::table& root, const std::set<std::string>& sections, const std::string& origin) {
  for (const auto& [k, v] : root) {
    if (!sections.count(std::string(k.str())))
      fail_input("{}: unknown section [{}] (sections: {})", origin, shorten(k.str()), fmt::join(sections, ", "));
    if (!v.is_table()) fail_input("{}: '{}' must be a [section]", origin, shorten(k.str()));
  }
}

}  // namespace moetrace
