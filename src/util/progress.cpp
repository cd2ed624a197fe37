#include "util/progress.h"

#include <cmath>

#include "util/logging.h"

namespace moetrace {

std::string format_duration(double s) {
  if (!std::isfinite(s)) return "?";
  if (s < 60) return fmt::format("{:.1f} s", s);
  const auto total = static_cast<long>(s + 0.5);
  if (total < 3600) return fmt::format("{} min {:02d} s", total / 60, static_cast<int>(total % 60));
  return fmt::format("{} h {:02d} min", total / 3600, static_cast<int>((total % 3600) / 60));
}

ProgressMeter::ProgressMeter(std::string stage, std::string unit, std::size_t total, double interval_s)
    : stage_(std::move(stage)), unit_(std::move(unit)), total_(total), interval_(interval_s),
      start_(std::chrono::steady_clock::now()), last_(start_) {}

std::string ProgressMeter::line(std::size_t done, double elapsed) const {
  const double rate = elapsed > 0 ? done / elapsed : 0;
  const double pct = total_ ? 100.0 * done / total_ : 100.0;
  const double eta = rate > 0 ? (total_ - done) / rate : NAN;
  return fmt::format("{}: {}/{} {} ({:.1f}%), {:.2f} {}/s, elapsed {}, ETA {}", stage_, done, total_, unit_, pct, rate,
                     unit_, format_duration(elapsed), format_duration(eta));
}

void ProgressMeter::update(std::size_t done) {
  done_ = done;
  const auto now = std::chrono::steady_clock::now();
  if (std::chrono::duration<double>(now - last_).count() < interval_) return;
  last_ = now;
  spdlog::info("{}", line(done, std::chrono::duration<double>(now - start_).count()));
}

void ProgressMeter::finish() {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  spdlog::info("{}: done, {} {} in {} ({:.2f} {}/s)", stage_, done_, unit_, format_duration(elapsed),
               elapsed > 0 ? done_ / elapsed : 0.0, unit_);
}

}  // namespace moetrace
