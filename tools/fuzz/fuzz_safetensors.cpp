// libFuzzer target: a whole .safetensors file (length prefix, header, data section). The input is
// written to a memfd and opened through /proc/self/fd, so the real open/fstat/mmap path runs; every
// accepted tensor is then read in full (the NaN/Inf scan and a float conversion).
#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "fuzz_common.h"
#include "model/safetensors_file.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const int fd = ::memfd_create("fuzz.safetensors", 0);
  if (fd < 0) std::abort();
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, data, size, 0) != static_cast<ssize_t>(size)) std::abort();
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  return moetrace::fuzz::expect_input_error_or_success([&] {
    moetrace::SafetensorsFile f(path);
    for (const auto& [name, view] : f.tensors()) {
      (void)moetrace::first_nonfinite(view);
      if (view.numel() <= (1 << 20)) (void)view.to_float();
    }
  });
}
