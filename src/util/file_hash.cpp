#include "util/file_hash.h"

#include <openssl/evp.h>

#include <cstdio>
#include <memory>
#include <vector>

#include "util/error.h"

namespace moetrace {
namespace {

struct DigestContext {
  DigestContext() : ctx(EVP_MD_CTX_new()) {
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) != 1) fail_internal(__FILE__, __LINE__, "EVP_DigestInit_ex");
  }
  ~DigestContext() { EVP_MD_CTX_free(ctx); }
  void update(const void* p, std::size_t n) {
    if (EVP_DigestUpdate(ctx, p, n) != 1) fail_internal(__FILE__, __LINE__, "EVP_DigestUpdate");
  }
  std::string hex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(ctx, md, &len) != 1) fail_internal(__FILE__, __LINE__, "EVP_DigestFinal_ex");
    std::string out;
    for (unsigned int i = 0; i < len; ++i) out += fmt::format("{:02x}", md[i]);
    return out;
  }
  EVP_MD_CTX* ctx;
};

}  // namespace

std::string sha256_file(const std::filesystem::path& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) fail_input("cannot read {} to hash it", path.string());
  DigestContext d;
  std::vector<char> buf(1 << 22);
  std::size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f.get())) > 0) d.update(buf.data(), n);
  if (std::ferror(f.get())) fail_input("read error while hashing {}", path.string());
  return d.hex();
}

std::string sha256_bytes(const void* data, std::size_t bytes) {
  DigestContext d;
  if (bytes) d.update(data, bytes);
  return d.hex();
}

}  // namespace moetrace
