#include "ciagent/git/internal/pack_object.h"

#include <cstdint>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "ciagent/base/status_macros.h"

namespace ciagent {
namespace {

absl::string_view TypeName(uint8_t type) {
  switch (type) {
    case kCommit:
      return "commit";
    case kTree:
      return "tree";
    case kBlob:
      return "blob";
    case kTag:
      return "tag";
    default:
      return "";
  }
}

// Parses git's variable-length size of a delta header at *pos.
bool ReadDeltaSize(const ObjectBuffer& delta, size_t* pos, uint64_t* size) {
  *size = 0;
  int shift = 0;
  uint8_t byte;
  do {
    if (*pos >= delta.size || shift > 63) return false;
    byte = delta.bytes[(*pos)++];
    *size |= static_cast<uint64_t>(byte & 0x7f) << shift;
    shift += 7;
  } while (byte & 0x80);
  return true;
}

}  // namespace

absl::StatusOr<ObjectBuffer> ApplyDelta(const ObjectBuffer& base,
                                        const ObjectBuffer& delta) {
  size_t pos = 0;
  uint64_t base_size = 0;
  uint64_t result_size = 0;
  if (!ReadDeltaSize(delta, &pos, &base_size) ||
      !ReadDeltaSize(delta, &pos, &result_size)) {
    return PackError("truncated delta header");
  }
  if (base_size != base.size) {
    return PackError(absl::StrCat("delta for a base of ", base_size,
                                  " bytes applied to one of ", base.size));
  }
  // Each instruction byte yields at most 2^24 - 1 bytes.
  if (result_size / 0xffffff > delta.size) {
    return PackError("delta result size out of reach of its instructions");
  }
  CIAGENT_ASSIGN_OR_RETURN(ObjectBuffer result,
                           ObjectBuffer::OfSize(result_size));
  uint64_t out = 0;
  while (pos < delta.size) {
    const uint8_t op = delta.bytes[pos++];
    if (op & 0x80) {
      uint64_t offset = 0;
      uint64_t length = 0;
      for (int i = 0; i < 4; ++i) {
        if (op & (1 << i)) {
          if (pos >= delta.size) return PackError("truncated delta copy");
          offset |= static_cast<uint64_t>(delta.bytes[pos++]) << (8 * i);
        }
      }
      for (int i = 0; i < 3; ++i) {
        if (op & (0x10 << i)) {
          if (pos >= delta.size) return PackError("truncated delta copy");
          length |= static_cast<uint64_t>(delta.bytes[pos++]) << (8 * i);
        }
      }
      if (length == 0) length = 0x10000;
      if (offset > base.size || length > base.size - offset ||
          length > result_size - out) {
        return PackError("delta copies out of bounds");
      }
      std::memcpy(result.bytes.get() + out, base.bytes.get() + offset, length);
      out += length;
    } else if (op != 0) {
      if (op > delta.size - pos || op > result_size - out) {
        return PackError("delta inserts out of bounds");
      }
      std::memcpy(result.bytes.get() + out, delta.bytes.get() + pos, op);
      pos += op;
      out += op;
    } else {
      return PackError("reserved delta instruction 0");
    }
  }
  if (out != result_size) return PackError("delta result shorter than stated");
  return result;
}

absl::Status PackError(absl::string_view what) {
  return absl::DataLossError(absl::StrCat("malformed pack: ", what));
}

void HashObjectHeader(Sha1& sha1, uint8_t type, uint64_t size) {
  const std::string header = absl::StrCat(TypeName(type), " ", size);
  sha1.Update(header.data(), header.size() + 1);  // with the NUL
}

}  // namespace ciagent
