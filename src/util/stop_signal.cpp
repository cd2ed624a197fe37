#include "util/stop_signal.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

namespace moetrace {
namespace {
volatile std::sig_atomic_t g_signal = 0;
extern "C" void on_stop_signal(int sig) { g_signal = sig; }
}  // namespace

void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGTERM, SIGUSR1, SIGINT}) sigaction(sig, &sa, nullptr);
}

namespace {
std::string g_stop_file;
bool g_stop_file_seen = false;
std::chrono::steady_clock::time_point g_stop_file_checked{};
}  // namespace

void watch_stop_file(const std::string& path) {
  g_stop_file = path;
  g_stop_file_seen = false;
}

bool stop_requested() {
  if (g_signal != 0 || g_stop_file_seen) return true;
  if (g_stop_file.empty()) return false;
  const auto now = std::chrono::steady_clock::now();
  if (now - g_stop_file_checked < std::chrono::milliseconds(200)) return false;
  g_stop_file_checked = now;
  g_stop_file_seen = access(g_stop_file.c_str(), F_OK) == 0;
  return g_stop_file_seen;
}

int stop_signal_number() { return g_signal; }

std::string stop_reason() {
  if (g_signal != 0) return "signal " + std::to_string(g_signal);
  if (g_stop_file_seen) return "stop file " + g_stop_file;
  return "";
}

namespace {

struct PauseTarget {
  std::string name, mark;
  long at = 0;         // 0: no pause point set
  bool count = false;  // NAME:count: report every pass, pause nowhere
};

PauseTarget read_pause_target() {
  PauseTarget t;
  const char* spec = std::getenv("MOETRACE_TEST_PAUSE");
  if (!spec || !*spec) return t;
  const std::string s = spec;
  const auto colon = s.find(':');
  t.name = s.substr(0, colon);
  const std::string k = colon == std::string::npos ? "1" : s.substr(colon + 1);
  t.count = k == "count";
  t.at = t.count ? 1 : std::atol(k.c_str());
  if (const char* mark = std::getenv("MOETRACE_TEST_PAUSE_MARK")) t.mark = mark;
  return t;
}

}  // namespace

void test_pause_point(const char* name) {
  static const PauseTarget target = read_pause_target();
  static long passed = 0;
  if (target.at <= 0 || target.name != name) return;
  ++passed;
  if (target.count) {
    std::fprintf(stderr, "moetrace: test pause point %s passed %ld\n", name, passed);
    return;
  }
  if (passed != target.at) return;
  if (!target.mark.empty()) {
    if (std::ifstream(target.mark).good()) return;
    const char* job = std::getenv("SLURM_JOB_ID");
    const char* task = std::getenv("SLURM_ARRAY_TASK_ID");
    std::ofstream(target.mark) << "pid " << getpid() << " job " << (job ? job : "none") << " task "
                               << (task ? task : "none") << "\n";
  }
  std::fprintf(stderr, "moetrace: test pause at %s %ld (pid %d)\n", name, passed, static_cast<int>(getpid()));
  std::fflush(stderr);
  while (!stop_requested()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

}  // namespace moetrace
