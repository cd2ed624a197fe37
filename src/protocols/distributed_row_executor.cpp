#include "protocols/distributed_row_executor.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <cstring>
#include <deque>

#include "comm/errors.h"
#include "util/error.h"
#include "util/logging.h"
#include "util/progress.h"
#include "util/stop_signal.h"

namespace moetrace {
namespace {

constexpr int kTagWork = 101;    // coordinator -> leader: a chunk of rows; an empty chunk = no more
constexpr int kTagResult = 102;  // leader -> coordinator: the chunk's rows and their values
constexpr int kAhead = 2;        // chunks assigned to a group at a time: one computing, one waiting

class Writer {
 public:
  template <typename T>
  void put(const T& v) { put_bytes(&v, sizeof v); }
  void put_bytes(const void* p, std::size_t n) {
    b_.insert(b_.end(), static_cast<const char*>(p), static_cast<const char*>(p) + n);
  }
  Bytes take() { return std::move(b_); }

 private:
  Bytes b_;
};

class Reader {
 public:
  explicit Reader(const Bytes& b) : b_(b) {}
  template <typename T>
  T get() {
    T v;
    get_bytes(&v, sizeof v);
    return v;
  }
  void get_bytes(void* p, std::size_t n) {
    MOETRACE_ASSERT(pos_ + n <= b_.size(), "malformed executor message");
    if (n) std::memcpy(p, b_.data() + pos_, n);
    pos_ += n;
  }
  bool at_end() const { return pos_ == b_.size(); }

 private:
  const Bytes& b_;
  std::size_t pos_ = 0;
};

Bytes encode_chunk(const std::vector<int>& rows) {
  Writer w;
  w.put(static_cast<std::int32_t>(rows.size()));
  for (int r : rows) w.put(static_cast<std::int32_t>(r));
  return w.take();
}

std::vector<int> decode_chunk(const Bytes& b) {
  Reader r(b);
  const auto n = r.get<std::int32_t>();
  MOETRACE_ASSERT(n >= 0, "malformed work message");
  std::vector<int> rows(static_cast<std::size_t>(n));
  for (int& v : rows) v = r.get<std::int32_t>();
  MOETRACE_ASSERT(r.at_end(), "malformed work message");
  return rows;
}

Bytes encode_results(const std::vector<int>& rows, const std::vector<std::vector<double>>& values) {
  Writer w;
  w.put(static_cast<std::int32_t>(rows.size()));
  for (std::size_t k = 0; k < rows.size(); ++k) {
    w.put(static_cast<std::int32_t>(rows[k]));
    w.put(static_cast<std::int64_t>(values[k].size()));
    w.put_bytes(values[k].data(), values[k].size() * sizeof(double));
  }
  return w.take();
}

std::vector<std::pair<int, std::vector<double>>> decode_results(const Bytes& b) {
  Reader r(b);
  const auto n = r.get<std::int32_t>();
  std::vector<std::pair<int, std::vector<double>>> out;
  for (std::int32_t k = 0; k < n; ++k) {
    const int row = r.get<std::int32_t>();
    const auto width = r.get<std::int64_t>();
    MOETRACE_ASSERT(width >= 0 && static_cast<std::uint64_t>(width) <= b.size(), "malformed result message");
    std::vector<double> v(static_cast<std::size_t>(width));
    r.get_bytes(v.data(), v.size() * sizeof(double));
    out.emplace_back(row, std::move(v));
  }
  MOETRACE_ASSERT(r.at_end(), "malformed result message");
  return out;
}

// A table's first `cols` columns plus a stop flag and whether every row is done, from world rank 0
// to all.
Bytes encode_table(bool stopped, bool complete, const Matrix2& m, int cols) {
  Writer w;
  w.put(static_cast<std::int64_t>(stopped));
  w.put(static_cast<std::int64_t>(complete));
  w.put(static_cast<std::int64_t>(m.rows));
  w.put(static_cast<std::int64_t>(cols));
  if (cols == m.cols) {
    w.put_bytes(m.v.data(), m.v.size() * sizeof(double));
  } else {
    for (int r = 0; r < m.rows; ++r)
      w.put_bytes(m.v.data() + static_cast<std::size_t>(r) * m.cols, static_cast<std::size_t>(cols) * sizeof(double));
  }
  return w.take();
}

bool decode_table(const Bytes& b, Matrix2& m, bool& complete) {
  Reader r(b);
  const auto stopped = r.get<std::int64_t>();
  complete = r.get<std::int64_t>() != 0;
  const auto rows = r.get<std::int64_t>(), cols = r.get<std::int64_t>();
  MOETRACE_ASSERT(rows >= 0 && cols >= 0 && static_cast<std::uint64_t>(rows * cols) * sizeof(double) <= b.size(),
                  "malformed table message");
  m = Matrix2(static_cast<int>(rows), static_cast<int>(cols), NAN);
  r.get_bytes(m.v.data(), m.v.size() * sizeof(double));
  MOETRACE_ASSERT(r.at_end(), "malformed table message");
  return stopped != 0;
}

// The coordinator's state while it hands out chunks: what is queued, what each leader has, what is done.
struct Dispatch {
  Dispatch(const std::vector<std::vector<int>>& chunks, int leaders) : outstanding(leaders, 0) {
    for (const auto& c : chunks) total_rows += c.size();
    for (const auto& c : chunks) queue.push_back(&c);
  }
  void count_done(std::size_t rows) {
    completed += rows;
    if (progress) progress->update(completed);
  }
  int in_flight() const {
    int n = 0;
    for (int o : outstanding) n += o;
    return n;
  }

  std::size_t total_rows = 0;
  std::deque<const std::vector<int>*> queue;
  std::vector<int> outstanding;  // chunks handed to each leader whose results are not back
  std::size_t completed = 0;
  bool stopping = false;
  std::optional<ProgressMeter> progress;  // none for an unlabelled table (the scan reports its own)
};

}  // namespace

DistributedRowExecutor::DistributedRowExecutor(Communicator& world, Communicator& group, Communicator& leaders,
                                               ResultsFile& results, int chunk_tokens, double progress_every_s,
                                               std::function<void()> checkpoint)
    : RowExecutor(chunk_tokens), world_(world), group_(group), leaders_(leaders), results_(results),
      progress_every_s_(progress_every_s), checkpoint_(std::move(checkpoint)) {
  MOETRACE_ASSERT(group_.rank() != 0 || world_.rank() != 0 || leaders_.rank() == 0,
                  "world rank 0 must be rank 0 of the leaders");
}

// A leader takes chunks from the coordinator and broadcasts each to its group; the others follow.
void DistributedRowExecutor::follow(const ChunkFunction& compute) {
  const bool leader = group_.rank() == 0;
  while (true) {
    Bytes item = leader ? leaders_.recv(0, kTagWork, nullptr) : Bytes{};
    group_.broadcast(item, 0);
    const std::vector<int> rows = decode_chunk(item);
    if (rows.empty()) break;
    const std::vector<std::vector<double>> values = compute(rows);
    if (leader) leaders_.send(encode_results(rows, values), 0, kTagResult);
  }
}

bool DistributedRowExecutor::distribute(const std::string& label, const std::vector<std::vector<int>>& chunks,
                                        const ChunkFunction& compute,
                                        const std::function<void(int, const std::vector<double>&)>& deliver) {
  if (!coordinator()) {
    follow(compute);
    return false;
  }
  Dispatch d(chunks, leaders_.size());
  const int remote = leaders_.size() - 1;
  if (!label.empty()) d.progress.emplace(label, unit_, d.total_rows, progress_every_s_);
  auto hand_out = [&](int leader_rank) {
    while (!d.stopping && !d.queue.empty() && d.outstanding[leader_rank] < kAhead) {
      leaders_.send(encode_chunk(*d.queue.front()), leader_rank, kTagWork);
      d.queue.pop_front();
      ++d.outstanding[leader_rank];
    }
  };
  auto take_result = [&] {
    int from = -1;
    const auto results = decode_results(leaders_.recv(-1, kTagResult, &from));
    --d.outstanding[from];
    for (const auto& [row, values] : results) deliver(row, values);
    checkpoint_();
    d.count_done(results.size());
    if (stop_requested()) d.stopping = true;
    hand_out(from);
  };
  // The coordinator's own group computes a chunk too; remote groups have their next chunk queued.
  auto compute_own_chunk = [&] {
    const std::vector<int>& rows = *d.queue.front();
    d.queue.pop_front();
    Bytes item = encode_chunk(rows);
    group_.broadcast(item, 0);
    const std::vector<std::vector<double>> values = compute(rows);
    MOETRACE_ASSERT(values.size() == rows.size(), "one result per row of a chunk");
    for (std::size_t k = 0; k < rows.size(); ++k) deliver(rows[k], values[k]);
    checkpoint_();
    d.count_done(rows.size());
  };
  for (int l = 1; l <= remote; ++l) hand_out(l);
  while (true) {
    while (leaders_.probe(-1, kTagResult)) take_result();
    if (stop_requested()) d.stopping = true;
    if (!d.stopping && !d.queue.empty()) {
      compute_own_chunk();
      continue;
    }
    if (d.in_flight() == 0) break;
    take_result();
  }
  for (int l = 1; l <= remote; ++l) leaders_.send(encode_chunk({}), l, kTagWork);
  Bytes done = encode_chunk({});
  group_.broadcast(done, 0);
  if (!d.stopping && d.progress) d.progress->finish();
  return d.stopping;
}

Matrix2 DistributedRowExecutor::run_rows(const std::string& label, int rows, const std::vector<int>& subset, const RowCost& cost,
                                         const std::vector<RowOutput>& outputs, const ChunkFunction& compute) {
  StoredRows stored;
  std::vector<std::vector<int>> chunks;
  bool complete = false;
  if (coordinator()) {
    stored = open_rows(results_, rows, outputs);
    std::vector<int> todo;
    for (int i : subset)
      if (!stored.done[i]) todo.push_back(i);
    complete = static_cast<std::size_t>(std::count(stored.done.begin(), stored.done.end(), true)) + todo.size() ==
               static_cast<std::size_t>(rows);
    chunks = make_chunks(todo, cost);
  }
  const bool stopped = distribute(label, chunks, compute, [&](int row, const std::vector<double>& values) {
    store_row(results_, row, outputs, values, stored.values);
  });
  // Every rank gets the whole table (or its shared columns) from the coordinator, so later
  // selections agree; the coordinator keeps its own.
  Bytes table;
  if (coordinator()) {
    if (!chunks.empty()) results_.flush();  // a stage's end (or a stop) is saved at once
    const int cols = shared_columns_ > 0 ? std::min(shared_columns_, stored.values.cols) : stored.values.cols;
    table = encode_table(stopped, complete, stored.values, cols);
  }
  world_.broadcast(table, 0);
  if (coordinator()) {
    last_complete_ = complete;
    if (stopped) throw StopRequested();
    return std::move(stored.values);
  }
  Matrix2 all;
  if (decode_table(table, all, last_complete_)) throw StopRequested();
  return all;
}

std::vector<char> DistributedRowExecutor::on_writer(const std::function<std::vector<char>()>& compute) {
  // The first byte says whether the rest is the result (1) or the writer's error message (0).
  Bytes b;
  if (coordinator()) {
    try {
      b = compute();
      b.insert(b.begin(), 1);
    } catch (const InputError& e) {
      const std::string message = e.what();
      b.assign(message.begin(), message.end());
      b.insert(b.begin(), 0);
    }
  }
  world_.broadcast(b, 0);
  MOETRACE_ASSERT(!b.empty(), "malformed on_writer message");
  if (b.front() == 0) throw CollectiveError(std::string(b.begin() + 1, b.end()));
  b.erase(b.begin());
  return b;
}

}  // namespace moetrace
