#include "ciagent/base/sha256.h"

#include <openssl/evp.h>

#include <cstdlib>

#include "absl/strings/escaping.h"

namespace ciagent {

// EVP failures mean allocation failure or a broken OpenSSL: nothing a
// caller could handle, so they abort instead of returning a wrong digest.
struct Sha256::State {
  State() : ctx(EVP_MD_CTX_new()) {
    if (ctx == nullptr) std::abort();
    Init();
  }
  ~State() { EVP_MD_CTX_free(ctx); }
  void Init() {
    if (EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) != 1) std::abort();
  }
  EVP_MD_CTX* ctx;
};

Sha256::Sha256() : state_(std::make_unique<State>()) {}
Sha256::~Sha256() = default;

void Sha256::Update(absl::string_view bytes) {
  if (EVP_DigestUpdate(state_->ctx, bytes.data(), bytes.size()) != 1) {
    std::abort();
  }
}

std::string Sha256::HexDigest() {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (EVP_DigestFinal_ex(state_->ctx, digest, &size) != 1) std::abort();
  state_->Init();
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), size));
}

void Sha256::Reset() { state_->Init(); }

std::string Sha256Hex(absl::string_view bytes) {
  Sha256 hash;
  hash.Update(bytes);
  return hash.HexDigest();
}

}  // namespace ciagent
