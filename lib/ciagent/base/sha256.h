// SHA-256 over OpenSSL: content digests of blobs, artifacts and cache keys.
//
//   Sha256 hash;
//   hash.Update(chunk);  // as often as needed
//   std::string hex = hash.HexDigest();  // 64 lowercase hex digits
//
//   Sha256Hex("abc") == "ba7816bf..."
//
// Thread-safety: a Sha256 object is used by one thread at a time.
#ifndef CIAGENT_BASE_SHA256_H_
#define CIAGENT_BASE_SHA256_H_

#include <memory>
#include <string>

#include "absl/strings/string_view.h"

namespace ciagent {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(absl::string_view bytes);
  // The digest of everything so far; the object then starts over.
  std::string HexDigest();
  // Forgets everything so far.
  void Reset();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

std::string Sha256Hex(absl::string_view bytes);

}  // namespace ciagent

#endif  // CIAGENT_BASE_SHA256_H_
