#include "util/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "util/logging.h"

namespace moetrace {

std::string format_duration(double s) {
  if (!std::isfinite(s)) return "?";
  if (s < 60) return fmt::format("{:.1f} s", s);
  const auto total = static_cast<long>(s + 0.5);
  if (total < 3600) return fmt::format("{} min {:02d} s", total / 60, static_cast<int>(total % 60));
  return fmt::format("{} h {:02d} min", total / 3600, static_cast<int>((total % 3600) / 60));
}

ProgressOptions default_progress_options(double interval_s) {
  ProgressOptions o;
  o.interval_s = interval_s;
  o.live = isatty(STDERR_FILENO) != 0;
  return o;
}

ProgressMeter::ProgressMeter(std::string stage, std::string unit, std::size_t total, double interval_s)
    : ProgressMeter(std::move(stage), std::move(unit), total, default_progress_options(interval_s)) {}

ProgressMeter::ProgressMeter(std::string stage, std::string unit, std::size_t total, ProgressOptions options)
    : stage_(std::move(stage)), unit_(std::move(unit)), total_(total), options_(std::move(options)) {
  if (!options_.clock) {
    options_.clock = [] {
      return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
    };
  }
  if (!options_.log) options_.log = [](const std::string& l) { spdlog::info("{}", l); };
  if (!options_.draw) {
    options_.draw = [](const std::string& b, bool final) {
      std::fprintf(stderr, "\r\033[2K%s%s", b.c_str(), final ? "\n" : "");  // clear the line, redraw
      std::fflush(stderr);
    };
  }
  start_ = last_ = now();
}

double ProgressMeter::now() const { return options_.clock(); }

double ProgressMeter::eta(std::size_t done, double elapsed) const {
  if (done >= total_) return 0;
  if (elapsed < options_.eta_min_seconds || done < std::max<std::size_t>(options_.eta_min_units, 1)) return NAN;
  return static_cast<double>(total_ - done) * elapsed / static_cast<double>(done);
}

std::string ProgressMeter::line(std::size_t done, double elapsed) const {
  const double rate = elapsed > 0 ? done / elapsed : 0;
  const double pct = total_ ? 100.0 * done / total_ : 100.0;
  const double e = eta(done, elapsed);
  return fmt::format("{}: {}/{} {} ({:.1f}%), {:.2f} {}/s, elapsed {}, ETA {}", stage_, done, total_, unit_, pct, rate,
                     unit_, format_duration(elapsed), std::isnan(e) ? std::string("not yet measured") : format_duration(e));
}

std::string ProgressMeter::bar(std::size_t done, double elapsed) const {
  constexpr int kWidth = 24;
  const double frac = total_ ? std::min(1.0, static_cast<double>(done) / total_) : 1.0;
  const int filled = static_cast<int>(frac * kWidth);
  const double e = eta(done, elapsed);
  std::string out = fmt::format("{} [{}{}] {}/{} {} {:5.1f}%", stage_, std::string(filled, '#'),
                                std::string(kWidth - filled, '.'), done, total_, unit_, 100 * frac);
  if (!std::isnan(e)) out += fmt::format("  {:.2f} {}/s  ETA {}", done / elapsed, unit_, format_duration(e));
  else out += fmt::format("  elapsed {}", format_duration(elapsed));
  return out;
}

void ProgressMeter::update(std::size_t done) {
  done_ = done;
  const double t = now();
  if (t - last_ < (options_.live ? options_.live_interval_s : options_.interval_s)) return;
  last_ = t;
  if (options_.live) {
    options_.draw(bar(done, t - start_), false);
    drawn_ = true;
  } else {
    options_.log(line(done, t - start_));
  }
}

void ProgressMeter::finish() {
  const double elapsed = now() - start_;
  if (drawn_) options_.draw(bar(done_, elapsed), true);
  options_.log(fmt::format("{}: done, {} {} in {} ({:.2f} {}/s)", stage_, done_, unit_, format_duration(elapsed),
                           elapsed > 0 ? done_ / elapsed : 0.0, unit_));
}

}  // namespace moetrace
