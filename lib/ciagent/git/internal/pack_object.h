// The objects of a git pack, one at a time (gitformat-pack(5)): their ids,
// packed types, SHA-1 as git computes it, zlib inflation, and git's delta
// format. The pack indexer (pack_indexer.h) is built on these; they know
// nothing of a pack's layout or of files.
//
// Example:
//   Sha1 sha1;
//   HashObjectHeader(sha1, kBlob, content.size);
//   sha1.Update(content.bytes.get(), content.size);
//   Oid id = sha1.Finish();
//   CIAGENT_ASSIGN_OR_RETURN(ObjectBuffer target, ApplyDelta(base, delta));
//
// Errors: kDataLoss ("malformed pack: ...") for a delta that does not fit
// its base; kResourceExhausted for a stated size that cannot be allocated.
//
// Thread-safety: a Sha1 or Inflater is used by one thread at a time; the
// functions keep no state.
#ifndef CIAGENT_GIT_INTERNAL_PACK_OBJECT_H_
#define CIAGENT_GIT_INTERNAL_PACK_OBJECT_H_

#include <openssl/evp.h>
#include <zlib.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace ciagent {

constexpr size_t kOidSize = 20;
using Oid = std::array<uint8_t, kOidSize>;

// Entry types as packed (gitformat-pack(5)).
enum PackedType : uint8_t {
  kCommit = 1,
  kTree = 2,
  kBlob = 3,
  kTag = 4,
  kOffsetDelta = 6,
  kReferenceDelta = 7,
};

// kDataLoss "malformed pack: <what>".
absl::Status PackError(absl::string_view what);

// SHA-1 through OpenSSL; the algorithm is fetched once per process (an
// implicit fetch per object costs more than hashing a small one).
class Sha1 {
 public:
  Sha1() : context_(EVP_MD_CTX_new()) { Reset(); }
  ~Sha1() { EVP_MD_CTX_free(context_); }
  Sha1(const Sha1&) = delete;
  Sha1& operator=(const Sha1&) = delete;

  void Reset() { EVP_DigestInit_ex(context_, Algorithm(), nullptr); }
  void Update(const void* data, size_t size) {
    EVP_DigestUpdate(context_, data, size);
  }
  Oid Finish() {
    Oid digest;
    unsigned int length = 0;
    EVP_DigestFinal_ex(context_, digest.data(), &length);
    Reset();
    return digest;
  }

 private:
  static const EVP_MD* Algorithm() {
    static const EVP_MD* sha1 = EVP_MD_fetch(nullptr, "SHA1", nullptr);
    return sha1;
  }
  EVP_MD_CTX* context_;
};

// Hashes the header git puts before an object's content: "blob 12\0".
void HashObjectHeader(Sha1& sha1, uint8_t type, uint64_t size);

// An object's content: allocated, not zeroed (inflate or a delta fills it).
struct ObjectBuffer {
  std::unique_ptr<uint8_t[]> bytes;
  size_t size = 0;
  // kResourceExhausted rather than an exception when the size (which a
  // pack states) cannot be had.
  static absl::StatusOr<ObjectBuffer> OfSize(uint64_t size) {
    uint8_t* bytes = size <= SIZE_MAX / 2 ? new (std::nothrow)
                                                uint8_t[size == 0 ? 1 : size]
                                          : nullptr;
    if (bytes == nullptr) {
      return absl::ResourceExhaustedError(
          absl::StrCat("no memory for an object of ", size, " bytes"));
    }
    return ObjectBuffer{std::unique_ptr<uint8_t[]>(bytes),
                        static_cast<size_t>(size)};
  }
};

// A zlib stream for inflating entries one after another: Reset between
// entries keeps zlib's window allocated.
class Inflater {
 public:
  Inflater() { inflateInit(&stream_); }
  ~Inflater() { inflateEnd(&stream_); }
  Inflater(const Inflater&) = delete;
  Inflater& operator=(const Inflater&) = delete;

  z_stream& stream() { return stream_; }
  void Reset() { inflateReset(&stream_); }

 private:
  z_stream stream_{};
};

// Applies `delta` to `base`: git's copy and insert instructions. kDataLoss
// when the delta's stated base size is not `base`'s, or it reaches outside
// either.
absl::StatusOr<ObjectBuffer> ApplyDelta(const ObjectBuffer& base,
                                        const ObjectBuffer& delta);

}  // namespace ciagent

#endif  // CIAGENT_GIT_INTERNAL_PACK_OBJECT_H_
