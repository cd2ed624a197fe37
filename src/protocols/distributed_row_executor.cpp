#include "protocols/distributed_row_executor.h"

#include <algorithm>
#include <cstring>
#include <deque>
#include <map>

#include "util/error.h"
#include "util/logging.h"
#include "util/progress.h"
#include "util/stop_signal.h"

namespace moetrace {
namespace {

constexpr int kTagWork = 101;    // coordinator -> leader: int32 row, -1 = no more rows
constexpr int kTagResult = 102;  // leader -> coordinator: int32 row, then the row's doubles
constexpr int kAhead = 2;        // rows assigned to a group at a time: one computing, one waiting

Bytes encode_row(int row, const std::vector<double>& values) {
  Bytes b(sizeof(std::int32_t) + values.size() * sizeof(double));
  const std::int32_t r = row;
  std::memcpy(b.data(), &r, sizeof r);
  if (!values.empty()) std::memcpy(b.data() + sizeof r, values.data(), values.size() * sizeof(double));
  return b;
}

std::pair<int, std::vector<double>> decode_row(const Bytes& b) {
  MOETRACE_ASSERT(b.size() >= sizeof(std::int32_t) && (b.size() - sizeof(std::int32_t)) % sizeof(double) == 0,
                  "malformed result message");
  std::int32_t r;
  std::memcpy(&r, b.data(), sizeof r);
  std::vector<double> v((b.size() - sizeof r) / sizeof(double));
  if (!v.empty()) std::memcpy(v.data(), b.data() + sizeof r, v.size() * sizeof(double));
  return {r, std::move(v)};
}

Bytes encode_int(std::int32_t v) {
  Bytes b(sizeof v);
  std::memcpy(b.data(), &v, sizeof v);
  return b;
}

std::int32_t decode_int(const Bytes& b) {
  MOETRACE_ASSERT(b.size() == sizeof(std::int32_t), "malformed work message");
  std::int32_t v;
  std::memcpy(&v, b.data(), sizeof v);
  return v;
}

// Every row of `rows` x `width` doubles plus a flag, from world rank 0 to all.
Bytes encode_table(bool stopped, const std::vector<std::vector<double>>& table) {
  Bytes b;
  auto put = [&](const void* p, std::size_t n) {
    b.insert(b.end(), static_cast<const char*>(p), static_cast<const char*>(p) + n);
  };
  const std::int64_t flag = stopped, n = static_cast<std::int64_t>(table.size());
  put(&flag, sizeof flag);
  put(&n, sizeof n);
  for (const auto& row : table) {
    const std::int64_t w = static_cast<std::int64_t>(row.size());
    put(&w, sizeof w);
    put(row.data(), row.size() * sizeof(double));
  }
  return b;
}

bool decode_table(const Bytes& b, std::vector<std::vector<double>>& table) {
  std::size_t pos = 0;
  auto get = [&](void* p, std::size_t n) {
    MOETRACE_ASSERT(pos + n <= b.size(), "malformed table message");
    std::memcpy(p, b.data() + pos, n);
    pos += n;
  };
  std::int64_t flag, n;
  get(&flag, sizeof flag);
  get(&n, sizeof n);
  table.assign(static_cast<std::size_t>(n), {});
  for (auto& row : table) {
    std::int64_t w;
    get(&w, sizeof w);
    row.resize(static_cast<std::size_t>(w));
    get(row.data(), row.size() * sizeof(double));
  }
  return flag != 0;
}

}  // namespace

DistributedRowExecutor::DistributedRowExecutor(Communicator& world, Communicator& group, Communicator& leaders,
                                               ResultsFile& results, double progress_every_s,
                                               std::function<void()> checkpoint)
    : world_(world), group_(group), leaders_(leaders), results_(results), progress_every_s_(progress_every_s),
      checkpoint_(std::move(checkpoint)) {
  MOETRACE_ASSERT(group_.rank() != 0 || world_.rank() != 0 || leaders_.rank() == 0,
                  "world rank 0 must be rank 0 of the leaders");
}

bool DistributedRowExecutor::distribute(const std::string& label, const std::vector<int>& rows,
                                        const RowFunction& compute,
                                        const std::function<void(int, const std::vector<double>&)>& deliver,
                                        bool report) {
  const bool leader = group_.rank() == 0;
  if (!coordinator()) {
    // A leader takes rows from the coordinator and broadcasts each to its group; the others follow.
    while (true) {
      Bytes item = leader ? leaders_.recv(0, kTagWork, nullptr) : Bytes{};
      group_.broadcast(item, 0);
      const int row = decode_int(item);
      if (row < 0) break;
      std::vector<double> values = compute(row);
      if (leader) leaders_.send(encode_row(row, values), 0, kTagResult);
    }
    return false;
  }

  // The coordinator.
  std::deque<int> queue(rows.begin(), rows.end());
  const int remote = leaders_.size() - 1;
  std::vector<int> outstanding(leaders_.size(), 0);
  std::size_t completed = 0;
  bool stopping = false;
  ProgressMeter progress(label, "cases", rows.size(), progress_every_s_);
  auto hand_out = [&](int leader_rank) {
    while (!stopping && !queue.empty() && outstanding[leader_rank] < kAhead) {
      leaders_.send(encode_int(queue.front()), leader_rank, kTagWork);
      queue.pop_front();
      ++outstanding[leader_rank];
    }
  };
  auto take_result = [&] {
    int from = -1;
    auto [row, values] = decode_row(leaders_.recv(-1, kTagResult, &from));
    --outstanding[from];
    deliver(row, values);
    progress.update(++completed);
    if (stop_requested()) stopping = true;
    hand_out(from);
  };
  for (int l = 1; l <= remote; ++l) hand_out(l);
  while (true) {
    while (leaders_.probe(-1, kTagResult)) take_result();
    if (stop_requested()) stopping = true;
    if (!stopping && !queue.empty()) {
      // The coordinator's own group computes a row too; remote groups have their next row queued.
      const int row = queue.front();
      queue.pop_front();
      Bytes item = encode_int(row);
      group_.broadcast(item, 0);
      deliver(row, compute(row));
      progress.update(++completed);
      continue;
    }
    int in_flight = 0;
    for (int o : outstanding) in_flight += o;
    if (in_flight == 0) break;
    take_result();
  }
  for (int l = 1; l <= remote; ++l) leaders_.send(encode_int(-1), l, kTagWork);
  Bytes done = encode_int(-1);
  group_.broadcast(done, 0);
  if (!stopping && report) progress.finish();
  return stopping;
}

Matrix2 DistributedRowExecutor::run(const std::string& label, int rows, const std::vector<RowOutput>& outputs,
                                    const RowFunction& compute) {
  std::vector<int> todo;
  if (coordinator()) {
    todo = rows_to_do(results_, rows, outputs);
    if (cost_)  // costliest first; ties in row order, so the order is reproducible
      std::stable_sort(todo.begin(), todo.end(), [&](int a, int b) { return cost_(a) > cost_(b); });
  }
  const bool stopped = distribute(
      label, todo, compute,
      [&](int row, const std::vector<double>& values) {
        store_row(results_, row, outputs, values);
        checkpoint_();
      },
      true);
  // Every rank gets every row (the coordinator's file is the source), so later selections agree.
  Bytes table;
  if (coordinator()) {
    results_.flush();
    const Matrix2 m = load_rows(results_, rows, outputs);
    std::vector<std::vector<double>> all;
    for (int r = 0; r < rows; ++r) all.emplace_back(m.v.begin() + static_cast<std::ptrdiff_t>(r) * m.cols,
                                                    m.v.begin() + static_cast<std::ptrdiff_t>(r + 1) * m.cols);
    table = encode_table(stopped, all);
  }
  world_.broadcast(table, 0);
  std::vector<std::vector<double>> all;
  if (decode_table(table, all)) throw StopRequested();
  if (!coordinator()) {
    // The scratch file of this rank mirrors the coordinator's rows (NaN rows included).
    rows_to_do(results_, rows, outputs);
    for (int r = 0; r < rows; ++r) store_row(results_, r, outputs, all[r]);
  }
  return load_rows(results_, rows, outputs);
}

std::vector<std::vector<double>> DistributedRowExecutor::map(const std::string& label, const std::vector<int>& rows,
                                                             const RowFunction& compute) {
  std::map<int, std::vector<double>> got;
  const bool stopped =
      distribute(label, rows, compute, [&](int row, const std::vector<double>& v) { got[row] = v; }, false);
  Bytes table;
  if (coordinator()) {
    std::vector<std::vector<double>> ordered;
    for (int r : rows) ordered.push_back(got.count(r) ? got[r] : std::vector<double>{});
    table = encode_table(stopped, ordered);
  }
  world_.broadcast(table, 0);
  std::vector<std::vector<double>> out;
  if (decode_table(table, out)) throw StopRequested();
  return out;
}

}  // namespace moetrace
