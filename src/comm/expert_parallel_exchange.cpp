#include "comm/expert_parallel_exchange.h"

#include <cstring>
#include <numeric>
#include <vector>

#include "util/error.h"

namespace moetrace {
namespace {

bool all_bits_zero(const float* row, int n) {
  for (int i = 0; i < n; ++i) {
    std::uint32_t bits;
    std::memcpy(&bits, row + i, sizeof bits);
    if (bits != 0) return false;
  }
  return true;
}

// Header of a rank's claim: its slots shape, then the indices of the rows it computed.
Bytes encode(std::int32_t rows, std::int32_t cols, const std::vector<std::int32_t>& mine) {
  Bytes b((2 + mine.size()) * sizeof(std::int32_t));
  std::memcpy(b.data(), &rows, sizeof rows);
  std::memcpy(b.data() + sizeof rows, &cols, sizeof cols);
  if (!mine.empty()) std::memcpy(b.data() + 2 * sizeof rows, mine.data(), mine.size() * sizeof(std::int32_t));
  return b;
}

std::vector<std::int32_t> decode(const Bytes& b, std::int32_t& rows, std::int32_t& cols) {
  MOETRACE_ASSERT(b.size() >= 2 * sizeof(std::int32_t) && b.size() % sizeof(std::int32_t) == 0,
                  "malformed expert exchange header");
  std::memcpy(&rows, b.data(), sizeof rows);
  std::memcpy(&cols, b.data() + sizeof rows, sizeof cols);
  std::vector<std::int32_t> idx(b.size() / sizeof(std::int32_t) - 2);
  if (!idx.empty()) std::memcpy(idx.data(), b.data() + 2 * sizeof rows, idx.size() * sizeof(std::int32_t));
  return idx;
}

// The rows of the staged slots that hold a non-zero bit: the rows this rank computed.
std::vector<std::int32_t> rows_with_bits(const std::vector<float>& host, int rows, int H) {
  std::vector<std::int32_t> mine;
  for (int r = 0; r < rows; ++r)
    if (!all_bits_zero(host.data() + static_cast<std::size_t>(r) * H, H)) mine.push_back(r);
  return mine;
}

// Every rank's claimed rows, decoded from the allgathered headers. Every rank sees the same headers,
// so every rank fails here together or not at all: on a shape mismatch (the ranks are not at the same
// MoE step) or a row claimed twice (an expert held by two ranks).
std::vector<std::vector<std::int32_t>> check_claims(const std::vector<Bytes>& headers, int me, int rows, int H) {
  const int R = static_cast<int>(headers.size());
  std::vector<std::vector<std::int32_t>> claimed(R);
  std::vector<char> owner_seen(static_cast<std::size_t>(rows), 0);
  for (int r = 0; r < R; ++r) {
    std::int32_t rr = 0, hh = 0;
    claimed[r] = decode(headers[r], rr, hh);
    if (rr != rows || hh != H)
      fail_internal(__FILE__, __LINE__,
                    fmt::format("expert exchange: rank {} has slots [{}, {}] but rank {} has [{}, {}]: the ranks "
                                "of the EP group are not at the same MoE step",
                                r, rr, hh, me, rows, H));
    for (std::int32_t i : claimed[r]) {
      MOETRACE_ASSERT(i >= 0 && i < rows, "expert exchange: slot row out of range");
      if (owner_seen[i])
        fail_internal(__FILE__, __LINE__,
                      fmt::format("expert exchange: slot row {} was computed by two ranks (second: rank {}); an "
                                  "expert is held by more than one rank of the EP group",
                                  i, r));
      owner_seen[i] = 1;
    }
  }
  return claimed;
}

// Sends my rows to every other rank and receives theirs, in rank order (an all-gather as one
// alltoallv: every destination reads the same packed send buffer).
std::vector<float> gather_rows(Communicator& group, const std::vector<float>& host, const std::vector<std::int32_t>& mine,
                               const std::vector<std::vector<std::int32_t>>& claimed, int H) {
  const int R = group.size(), me = group.rank();
  std::vector<float> send(mine.size() * static_cast<std::size_t>(H));
  for (std::size_t j = 0; j < mine.size(); ++j)
    std::memcpy(send.data() + j * H, host.data() + static_cast<std::size_t>(mine[j]) * H, sizeof(float) * H);
  std::vector<int> send_counts(R), send_displs(R, 0), recv_counts(R), recv_displs(R);
  std::size_t total = 0;
  for (int r = 0; r < R; ++r) {
    send_counts[r] = r == me ? 0 : static_cast<int>(send.size());
    recv_counts[r] = r == me ? 0 : static_cast<int>(claimed[r].size()) * H;
    recv_displs[r] = static_cast<int>(total);
    total += static_cast<std::size_t>(recv_counts[r]);
  }
  MOETRACE_ASSERT(total <= static_cast<std::size_t>(INT32_MAX), "expert exchange too large for MPI counts");
  std::vector<float> recv(total);
  group.alltoallv(send.data(), send_counts, send_displs, recv.data(), recv_counts, recv_displs);
  return recv;
}

}  // namespace

ExpertParallelExchange::ExpertParallelExchange(Communicator& group) : group_(group) {}

void ExpertParallelExchange::combine(Backend& backend, Tensor& slots) {
  ++calls_;
  const int R = group_.size();
  if (R == 1) return;
  const int me = group_.rank();
  const int rows = slots.rows(), H = slots.cols();

  // Host staging, for every backend (on CUDA: the slots down, the gathered rows back up).
  std::vector<float> host(static_cast<std::size_t>(rows) * H);
  if (!host.empty()) backend.download(slots, host.data());

  const std::vector<std::int32_t> mine = rows_with_bits(host, rows, H);

  // 1. Who computed which rows (and a shape check: every rank must be at the same MoE step).
  const Bytes my_header = encode(rows, H, mine);
  const std::vector<Bytes> headers = group_.allgather(my_header);
  for (int r = 0; r < R; ++r)
    if (r != me) {
      bytes_sent_ += my_header.size();
      bytes_received_ += headers[r].size();
    }
  const std::vector<std::vector<std::int32_t>> claimed = check_claims(headers, me, rows, H);

  // 2. Send my rows to every other rank, receive theirs.
  const std::vector<float> recv = gather_rows(group_, host, mine, claimed, H);
  const std::size_t total = recv.size();
  rows_sent_ += mine.size();
  const std::uint64_t payload_out =
      static_cast<std::uint64_t>(mine.size() * static_cast<std::size_t>(H)) * sizeof(float) * (R - 1);
  const std::uint64_t payload_in = static_cast<std::uint64_t>(total) * sizeof(float);
  payload_bytes_sent_ += payload_out;
  payload_bytes_received_ += payload_in;
  bytes_sent_ += payload_out;
  bytes_received_ += payload_in;

  // 3. Write the other ranks' rows into this rank's slots tensor (copies, never sums).
  std::vector<int> dst;
  dst.reserve(total / (H > 0 ? H : 1));
  for (int r = 0; r < R; ++r)
    if (r != me) dst.insert(dst.end(), claimed[r].begin(), claimed[r].end());
  if (dst.empty()) return;
  rows_received_ += dst.size();
  TensorPtr received = backend.upload(recv.data(), static_cast<int>(dst.size()), H);
  std::vector<int> src(dst.size());
  std::iota(src.begin(), src.end(), 0);
  backend.copy_rows(*received, src, slots, dst);
}

}  // namespace moetrace
