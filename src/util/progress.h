#pragma once
// Progress of a long stage. When stderr is a terminal, a live bar redrawn in place, e.g.
//   layer sweep [##########..........]  120/256 cases  46.9%  3.2 cases/s  ETA 43 s
// otherwise a plain log line at most every `interval` seconds, e.g.
//   layer sweep: 120/256 cases (46.9%), 3.20 cases/s, elapsed 37.5 s, ETA 43 s
// The ETA (and the rate in the bar) appear only once the rate has been measured over at least
// `eta_min_seconds` and `eta_min_units` units: an ETA from the first item is noise.
#include <chrono>
#include <functional>
#include <string>

namespace moetrace {

struct ProgressOptions {
  double interval_s = 10.0;         // plain lines: at most one per interval
  double live_interval_s = 0.2;     // live bar: redrawn at most this often
  double eta_min_seconds = 5.0;     // the ETA needs the rate measured over this long ...
  std::size_t eta_min_units = 3;    // ... and over this many units
  bool live = false;                // draw a live bar (default: when stderr is a terminal)
  std::function<double()> clock;    // seconds on a monotone clock (default: steady_clock)
  // Where output goes (default: plain lines and the final line to the log; the live bar to stderr,
  // `live_final` ending the bar's line). Tests inject both.
  std::function<void(const std::string& line)> log;
  std::function<void(const std::string& bar, bool live_final)> draw;
};

// Options for a stage logged every `interval_s` seconds, live when stderr is a terminal.
ProgressOptions default_progress_options(double interval_s);

class ProgressMeter {
 public:
  ProgressMeter(std::string stage, std::string unit, std::size_t total, double interval_s = 10.0);
  ProgressMeter(std::string stage, std::string unit, std::size_t total, ProgressOptions options);
  // Records that `done` units are finished (monotone); logs or redraws when due.
  void update(std::size_t done);
  // Logs the final line (total time and mean rate).
  void finish();

  // The ETA in seconds at `elapsed` seconds with `done` units finished, or NaN while the rate is
  // not yet measured well enough (see ProgressOptions).
  double eta(std::size_t done, double elapsed) const;
  std::string line(std::size_t done, double elapsed) const;  // the plain line
  std::string bar(std::size_t done, double elapsed) const;   // the live bar

 private:
  double now() const;
  std::string stage_, unit_;
  std::size_t total_, done_ = 0;
  ProgressOptions options_;
  double start_ = 0, last_ = 0;
  bool drawn_ = false;
};

// "1 h 02 min", "4 min 05 s", "12.3 s"
std::string format_duration(double seconds);

}  // namespace moetrace
