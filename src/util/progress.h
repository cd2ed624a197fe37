#pragma once
// Progress of a long stage, logged at most every `interval` seconds with rate and ETA, e.g.
// "layer sweep: 120/256 cases (46.9%), 3.2 cases/s, ETA 43 s".
#include <chrono>
#include <string>

namespace moetrace {

class ProgressMeter {
 public:
  ProgressMeter(std::string stage, std::string unit, std::size_t total, double interval_s = 10.0);
  // Records that `done` units are finished (monotone); logs when the interval has passed.
  void update(std::size_t done);
  // Logs the final line (total time and mean rate).
  void finish();

 private:
  std::string line(std::size_t done, double elapsed) const;
  std::string stage_, unit_;
  std::size_t total_, done_ = 0;
  double interval_;
  std::chrono::steady_clock::time_point start_, last_;
};

// "1 h 02 min", "4 min 05 s", "12.3 s"
std::string format_duration(double seconds);

}  // namespace moetrace
