// What can be checked of the CUDA backend without a GPU: the registry's errors, and the host-side
// index planning of kernels/host_plan.h against plain references.
#define BOOST_TEST_MODULE cuda_host
#include <boost/test/unit_test.hpp>

#include <map>
#include <random>

#include "backend/backend_registry.h"
#include "kernels/cuda_backend.h"
#include "kernels/host_plan.h"
#include "util/error.h"

using namespace moetrace;

BOOST_AUTO_TEST_CASE(registry_names_and_errors) {
  BOOST_TEST(built_with_cuda());
  const auto names = backend_names();
  const std::vector<std::string> expected{"cpu", "cpu-bf16", "cuda", "cuda-bf16"};
  BOOST_TEST(names == expected, boost::test_tools::per_element());
  BOOST_TEST(make_backend("cpu")->name() == "cpu");
  BOOST_CHECK_THROW(make_backend("tpu"), InputError);
  BOOST_CHECK_THROW(make_backend("cuda:x"), InputError);
  BOOST_CHECK_THROW(make_backend("cuda:"), InputError);
  BOOST_CHECK_THROW(make_backend("cuda:-1"), InputError);
}

BOOST_AUTO_TEST_CASE(cuda_backend_without_a_gpu_throws_a_clear_error) {
  const int n = cuda_device_count();  // must never throw or crash, GPU or not
  BOOST_TEST_MESSAGE("CUDA devices visible: " << n);
  if (n == 0) {
    for (const char* name : {"cuda", "cuda-bf16", "cuda:0"}) {
      try {
        make_backend(name);
        BOOST_ERROR(name << ": expected an error without a GPU");
      } catch (const InputError& e) {
        BOOST_TEST_MESSAGE(name << ": " << e.what());
        BOOST_TEST(std::string(e.what()).find("GPU") != std::string::npos);
      }
    }
  } else {
    BOOST_TEST(make_backend("cuda")->name() == "cuda");
    BOOST_TEST(make_backend("cuda-bf16")->name() == "cuda-bf16");
    BOOST_CHECK_THROW(make_backend("cuda:" + std::to_string(n)), InputError);
  }
}

BOOST_AUTO_TEST_CASE(row_list_predicates) {
  using cuda_plan::has_duplicates;
  using cuda_plan::is_contiguous_range;
  BOOST_TEST(is_contiguous_range({3}));
  BOOST_TEST(is_contiguous_range({3, 4, 5}));
  BOOST_TEST(!is_contiguous_range({}));
  BOOST_TEST(!is_contiguous_range({3, 5}));
  BOOST_TEST(!is_contiguous_range({5, 4}));
  BOOST_TEST(!has_duplicates({}));
  BOOST_TEST(!has_duplicates({2, 0, 1}));
  BOOST_TEST(has_duplicates({2, 0, 2}));
}

BOOST_AUTO_TEST_CASE(expert_plan_matches_a_reference) {
  std::mt19937 rng(7);
  const int N = 50, K = 3, E = 9;
  // Only the pointers' identity matters to the plan; use distinct dummy addresses.
  std::vector<ExpertTask> tasks(E);
  for (int e = 0; e < E; ++e) {
    tasks[e].gate = reinterpret_cast<const Weight*>(0x1000 + 16 * e);
    tasks[e].up = reinterpret_cast<const Weight*>(0x2000 + 16 * e);
    tasks[e].down = reinterpret_cast<const Weight*>(0x3000 + 16 * e);
  }
  for (int row = 0; row < N; ++row)
    for (int j = 0; j < K; ++j) {
      const int e = static_cast<int>(rng() % E);
      if (e == 4) continue;  // one expert without tokens
      tasks[e].in_rows.push_back(row);
      tasks[e].out_rows.push_back(row * K + j);
      tasks[e].weights.push_back(static_cast<float>(row + j) / 100.f);
    }
  const cuda_plan::ExpertPlan p = cuda_plan::plan_experts(tasks, N, N * K);
  BOOST_TEST(p.groups() == E - 1);
  BOOST_TEST(p.offsets.front() == 0);
  BOOST_TEST(p.offsets.back() == p.total_rows());
  for (int g = 0; g < p.groups(); ++g) {
    const ExpertTask& t = tasks[p.task_of_group[g]];
    BOOST_TEST(!t.in_rows.empty());
    BOOST_TEST(p.offsets[g + 1] - p.offsets[g] == static_cast<int>(t.in_rows.size()));
    for (std::size_t i = 0; i < t.in_rows.size(); ++i) {
      BOOST_TEST(p.gather_rows[p.offsets[g] + i] == t.in_rows[i]);
      BOOST_TEST(p.scatter_rows[p.offsets[g] + i] == t.out_rows[i]);
      BOOST_TEST(p.weights[p.offsets[g] + i] == t.weights[i]);
    }
  }
  // Every slot row appears exactly once.
  std::map<int, int> seen;
  for (int r : p.scatter_rows) ++seen[r];
  for (auto [r, c] : seen) BOOST_TEST(c == 1);
  // Out-of-range rows are internal errors, not memory errors on the device.
  tasks[0].in_rows.push_back(N);
  tasks[0].out_rows.push_back(0);
  tasks[0].weights.push_back(1.f);
  BOOST_CHECK_THROW(cuda_plan::plan_experts(tasks, N, N * K), InternalError);
}

namespace {
struct FakeTensor : Tensor {
  FakeTensor(int r, int c) : Tensor(r, c) {}
};
}  // namespace

BOOST_AUTO_TEST_CASE(attention_items_cover_each_segment_row) {
  FakeTensor q(9, 8), k1(5, 4), k2(12, 4);
  std::vector<AttentionSegment> segs = {{0, 5, 0, &k1, &k1}, {6, 3, 9, &k2, &k2}};
  const auto items = cuda_plan::attention_items(segs, q.rows());
  BOOST_TEST(items.size() == 8u);
  BOOST_TEST(items[0].row == 0);
  BOOST_TEST(items[4].pos == 4);
  BOOST_TEST(items[5].row == 6);
  BOOST_TEST(items[5].seg == 1);
  BOOST_TEST(items[5].pos == 9);
  BOOST_TEST(items[7].pos == 11);
  segs[1].num_queries = 4;  // context of 13 needed, 12 given
  BOOST_CHECK_THROW(cuda_plan::attention_items(segs, 10), InternalError);
}

BOOST_AUTO_TEST_CASE(copies_split_into_bounded_pieces) {
  const auto p = cuda_plan::split_copy(10, 4);
  BOOST_TEST(p.size() == 3u);
  BOOST_TEST(p[2].src_offset == 8);
  BOOST_TEST(p[2].count == 2);
  BOOST_TEST(cuda_plan::split_copy(0, 4).empty());
}
