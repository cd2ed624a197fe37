// Progress meter with an injected clock: the ETA appears only once the rate has been measured over
// a few seconds and a few units, plain lines follow the interval, the live bar redraws in place.
#define BOOST_TEST_MODULE progress
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "util/progress.h"

using namespace moetrace;

namespace {

struct Recorder {
  double t = 100;  // the injected clock, in seconds
  std::vector<std::string> lines, bars;
  int finals = 0;
  ProgressOptions options(bool live) {
    ProgressOptions o;
    o.interval_s = 10;
    o.live_interval_s = 0.5;
    o.eta_min_seconds = 5;
    o.eta_min_units = 3;
    o.live = live;
    o.clock = [this] { return t; };
    o.log = [this](const std::string& l) { lines.push_back(l); };
    o.draw = [this](const std::string& b, bool final) {
      bars.push_back(b);
      finals += final;
    };
    return o;
  }
};

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

BOOST_AUTO_TEST_CASE(no_eta_from_one_item_or_a_short_time) {
  Recorder r;
  ProgressMeter p("case scan", "cases", 64, r.options(false));
  // The case: the first item after 21 s would extrapolate to 22 min; not shown.
  BOOST_TEST(std::isnan(p.eta(1, 21.0)));
  BOOST_TEST(std::isnan(p.eta(2, 60.0)));   // enough time, too few units
  BOOST_TEST(std::isnan(p.eta(50, 1.0)));   // enough units, too short a time
  BOOST_TEST(p.eta(4, 8.0) == 120.0);       // 60 left at 0.5/s
  BOOST_TEST(p.eta(64, 1.0) == 0.0);        // done
  r.t += 21;
  p.update(1);
  BOOST_TEST_REQUIRE(r.lines.size() == 1u);
  BOOST_TEST(has(r.lines[0], "1/64 cases"), r.lines[0]);
  BOOST_TEST(has(r.lines[0], "ETA not yet measured"), r.lines[0]);
  r.t += 21;
  p.update(3);
  BOOST_TEST_REQUIRE(r.lines.size() == 2u);
  BOOST_TEST(has(r.lines[1], "ETA 14 min 14 s"), r.lines[1]);  // 61 left at 3/42 per s = 854 s
}

BOOST_AUTO_TEST_CASE(plain_lines_follow_the_interval_and_finish_logs_the_rate) {
  Recorder r;
  ProgressMeter p("layer sweep", "cases", 10, r.options(false));
  r.t += 3;
  p.update(2);  // before the interval: nothing
  BOOST_TEST(r.lines.empty());
  r.t += 7;
  p.update(5);
  BOOST_TEST(r.lines.size() == 1u);
  r.t += 5;
  p.update(10);
  p.finish();
  BOOST_TEST_REQUIRE(r.lines.size() == 2u);
  BOOST_TEST(has(r.lines[1], "done, 10 cases in 15.0 s"), r.lines[1]);
  BOOST_TEST(r.bars.empty());
}

BOOST_AUTO_TEST_CASE(a_live_bar_redraws_in_place_and_ends_its_line_once) {
  Recorder r;
  ProgressMeter p("controls", "cases", 8, r.options(true));
  r.t += 1;
  p.update(1);
  BOOST_TEST_REQUIRE(r.bars.size() == 1u);
  BOOST_TEST(has(r.bars[0], "[###....................."), r.bars[0]);  // 1/8 of 24
  BOOST_TEST(!has(r.bars[0], "ETA"), r.bars[0]);
  r.t += 0.1;
  p.update(2);  // within the live interval: not redrawn
  BOOST_TEST(r.bars.size() == 1u);
  r.t += 5;
  p.update(4);
  BOOST_TEST_REQUIRE(r.bars.size() == 2u);
  BOOST_TEST(has(r.bars[1], "ETA"), r.bars[1]);
  BOOST_TEST(r.lines.empty());  // no log lines while the bar is live
  p.finish();
  BOOST_TEST(r.finals == 1);
  BOOST_TEST(r.lines.size() == 1u);
}
