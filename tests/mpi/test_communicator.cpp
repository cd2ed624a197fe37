// The communicator layer under mpirun (2 and 4 ranks): every collective, split, check_all, and the
// expert-parallel exchange on synthetic slots (including a -0.0 row, which must survive bit for bit).
#define BOOST_TEST_MODULE communicator
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstring>
#include <numeric>

#include "backend/backend.h"
#include "comm/errors.h"
#include "comm/expert_parallel_exchange.h"
#include "comm/single_rank_communicator.h"
#include "mpi_test_support.h"

using namespace moetrace;
using test::everywhere;

using test::MpiFixture;
BOOST_TEST_GLOBAL_FIXTURE(MpiFixture);

namespace {
std::unique_ptr<Communicator> world() { return make_world_communicator(); }
}  // namespace

BOOST_AUTO_TEST_CASE(world_is_mpi_with_several_ranks) {
  auto c = world();
  BOOST_TEST(c->name() == "mpi");
  BOOST_TEST(c->size() >= 2);
  BOOST_TEST(everywhere(*c, c->rank() >= 0 && c->rank() < c->size()));
}

BOOST_AUTO_TEST_CASE(allreduce_sums_every_type) {
  auto c = world();
  const int R = c->size(), r = c->rank();
  std::vector<float> f{static_cast<float>(r + 1), 0.5f};
  std::vector<double> d{static_cast<double>(r + 1), -1.0};
  std::vector<std::int64_t> i{r + 1, std::int64_t{1} << 40};
  c->allreduce_sum(f.data(), f.size());
  c->allreduce_sum(d.data(), d.size());
  c->allreduce_sum(i.data(), i.size());
  const double tri = R * (R + 1) / 2.0;
  const bool ok = f[0] == static_cast<float>(tri) && f[1] == 0.5f * R && d[0] == tri && d[1] == -R &&
                  i[0] == static_cast<std::int64_t>(tri) && i[1] == (std::int64_t{1} << 40) * R;
  BOOST_TEST(everywhere(*c, ok));
}

BOOST_AUTO_TEST_CASE(broadcast_replaces_every_buffer_with_the_roots) {
  auto c = world();
  const int root = c->size() - 1;
  Bytes b(static_cast<std::size_t>(c->rank()) * 3, 'x');  // sizes differ before the call
  if (c->rank() == root) b = Bytes{'h', 'e', 'l', 'l', 'o', '\0', 'w'};
  c->broadcast(b, root);
  BOOST_TEST(everywhere(*c, b == Bytes({'h', 'e', 'l', 'l', 'o', '\0', 'w'})));
  Bytes empty;
  if (c->rank() != 0) empty.assign(5, 'z');
  c->broadcast(empty, 0);
  BOOST_TEST(everywhere(*c, empty.empty()));
}

BOOST_AUTO_TEST_CASE(gather_and_allgather_variable_sizes_in_rank_order) {
  auto c = world();
  const int R = c->size(), r = c->rank();
  const Bytes mine(static_cast<std::size_t>(r), static_cast<char>('a' + r));  // rank 0 sends nothing
  auto expected_from = [](int q) { return Bytes(static_cast<std::size_t>(q), static_cast<char>('a' + q)); };
  bool ok = true;
  const auto all = c->allgather(mine);
  ok &= static_cast<int>(all.size()) == R;
  for (int q = 0; ok && q < R; ++q) ok &= all[q] == expected_from(q);
  const int root = R / 2;
  const auto gathered = c->gather(mine, root);
  if (r == root) {
    ok &= static_cast<int>(gathered.size()) == R;
    for (int q = 0; ok && q < R; ++q) ok &= gathered[q] == expected_from(q);
  } else {
    ok &= gathered.empty();
  }
  BOOST_TEST(everywhere(*c, ok));
}

BOOST_AUTO_TEST_CASE(alltoallv_delivers_per_pair_counts) {
  auto c = world();
  const int R = c->size(), r = c->rank();
  // Rank s sends (s + d + 1) floats of value 100 s + d to rank d.
  std::vector<int> sc(R), sd(R), rc(R), rd(R);
  std::vector<float> send;
  for (int d = 0; d < R; ++d) {
    sc[d] = r + d + 1;
    sd[d] = static_cast<int>(send.size());
    send.insert(send.end(), sc[d], static_cast<float>(100 * r + d));
  }
  int total = 0;
  for (int s = 0; s < R; ++s) {
    rc[s] = s + r + 1;
    rd[s] = total;
    total += rc[s];
  }
  std::vector<float> recv(total, -1.0f);
  c->alltoallv(send.data(), sc, sd, recv.data(), rc, rd);
  bool ok = true;
  for (int s = 0; s < R; ++s)
    for (int j = 0; j < rc[s]; ++j) ok &= recv[rd[s] + j] == static_cast<float>(100 * s + r);
  BOOST_TEST(everywhere(*c, ok));
}

BOOST_AUTO_TEST_CASE(split_by_colour_and_key) {
  auto c = world();
  const int R = c->size(), r = c->rank();
  auto sub = c->split(r % 2);
  const int expected_size = (R + 1 - r % 2) / 2;
  std::int64_t sum = r;
  sub->allreduce_sum(&sum, 1);
  std::int64_t expected_sum = 0;
  for (int q = r % 2; q < R; q += 2) expected_sum += q;
  bool ok = sub->size() == expected_size && sub->rank() == r / 2 && sum == expected_sum;
  // A key reverses the order.
  auto reversed = c->split(0, -r);
  ok &= reversed->size() == R && reversed->rank() == R - 1 - r;
  BOOST_TEST(everywhere(*c, ok));
}

BOOST_AUTO_TEST_CASE(check_all_agrees_on_the_lowest_failing_rank) {
  auto c = world();
  const int r = c->rank();
  bool no_throw = true;
  try {
    check_all(*c, true, "unused");
  } catch (...) {
    no_throw = false;
  }
  std::string caught;
  try {
    check_all(*c, r == 0, fmt::format("shard {} is broken", r));  // every rank but 0 fails
  } catch (const CollectiveError& e) {
    caught = e.what();
  }
  std::string expected = fmt::format("rank 1: shard 1 is broken");
  if (c->size() > 2) expected += fmt::format(" (and {} other rank{})", c->size() - 2, c->size() > 3 ? "s" : "");
  std::string same;
  try {
    fail_all(*c, "every rank sees this");
  } catch (const CollectiveError& e) {
    same = e.what();
  }
  BOOST_TEST(everywhere(*c, no_throw && caught == expected && same == "every rank sees this"));
  if (r == 0) BOOST_TEST_MESSAGE("check_all message: " << caught);
}

BOOST_AUTO_TEST_CASE(single_rank_communicator_is_a_group_of_one) {
  SingleRankCommunicator s;
  BOOST_TEST(s.size() == 1);
  double d = 2.5;
  s.allreduce_sum(&d, 1);
  BOOST_TEST(d == 2.5);
  BOOST_TEST(s.allgather(Bytes{'q'}).at(0) == Bytes{'q'});
  std::vector<float> in{1, 2, 3}, out(3);
  s.alltoallv(in.data(), {3}, {0}, out.data(), {3}, {0});
  BOOST_TEST(out == in);
  BOOST_CHECK_THROW(check_all(s, false, "x"), CollectiveError);
  BOOST_TEST(s.split(3)->size() == 1);
}

namespace {
bool bit_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}
}  // namespace

BOOST_AUTO_TEST_CASE(exchange_gives_every_rank_every_slot_row_bit_for_bit) {
  auto c = world();
  const int R = c->size(), r = c->rank();
  const int rows = 23, H = 7;
  // The full tensor: row i is owned by rank (i * 5) % R; row 4 is all -0.0, row 9 all +0.0.
  std::vector<float> full(rows * H);
  for (int i = 0; i < rows; ++i)
    for (int h = 0; h < H; ++h) full[i * H + h] = std::ldexp(static_cast<float>(i * 31 + h * 7 + 1), -(i % 5)) * (h % 2 ? -1.f : 1.f);
  for (int h = 0; h < H; ++h) full[4 * H + h] = -0.0f, full[9 * H + h] = 0.0f;
  std::vector<float> mine(rows * H, 0.0f);
  for (int i = 0; i < rows; ++i)
    if ((i * 5) % R == r) std::copy_n(full.begin() + i * H, H, mine.begin() + i * H);
  auto backend = make_cpu_backend();
  TensorPtr slots = backend->upload(mine.data(), rows, H);
  ExpertParallelExchange exchange(*c);
  exchange.combine(*backend, *slots);
  std::vector<float> got(rows * H);
  backend->download(*slots, got.data());
  std::int64_t sent = static_cast<std::int64_t>(exchange.rows_sent());
  c->allreduce_sum(&sent, 1);
  BOOST_TEST(everywhere(*c, bit_equal(got, full)));
  BOOST_TEST(sent == rows - 1);  // every row but the all +0.0 one is claimed exactly once
  // The counters behind the logged communication volume: one call; each own row goes to the R - 1
  // other ranks; what all ranks sent, all ranks received.
  const std::uint64_t row_bytes = static_cast<std::uint64_t>(H) * sizeof(float);
  BOOST_TEST(everywhere(*c, exchange.calls() == 1u));
  BOOST_TEST(everywhere(*c, exchange.payload_bytes_sent() == exchange.rows_sent() * row_bytes * (R - 1)));
  BOOST_TEST(everywhere(*c, exchange.bytes_sent() >= exchange.payload_bytes_sent()));
  std::int64_t volume[2] = {static_cast<std::int64_t>(exchange.payload_bytes_sent()),
                            static_cast<std::int64_t>(exchange.payload_bytes_received())};
  c->allreduce_sum(volume, 2);
  BOOST_TEST(volume[0] == volume[1]);
  BOOST_TEST(volume[0] == static_cast<std::int64_t>((rows - 1) * row_bytes * (R - 1)));
}

BOOST_AUTO_TEST_CASE(exchange_rejects_a_row_computed_by_two_ranks_on_every_rank) {
  auto c = world();
  const int rows = 4, H = 3;
  std::vector<float> mine(rows * H, 0.0f);
  mine[1 * H] = 1.0f + static_cast<float>(c->rank());  // every rank claims row 1
  auto backend = make_cpu_backend();
  TensorPtr slots = backend->upload(mine.data(), rows, H);
  ExpertParallelExchange exchange(*c);
  std::string caught;
  try {
    exchange.combine(*backend, *slots);
  } catch (const InternalError& e) {
    caught = e.what();
  }
  BOOST_TEST(everywhere(*c, caught.find("slot row 1 was computed by two ranks") != std::string::npos));
}
