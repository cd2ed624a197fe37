#include "backend/backend.h"

#include "util/error.h"

namespace moetrace {

std::pair<int, int> weight_matrix_shape(const TensorView& view) {
  if (view.shape.size() == 1) return {1, static_cast<int>(view.shape[0])};
  if (view.shape.size() == 2) return {static_cast<int>(view.shape[0]), static_cast<int>(view.shape[1])};
  fail_internal(__FILE__, __LINE__, "weights must be 1-D or 2-D: " + view.name);
}

}  // namespace moetrace
