// libFuzzer target for PackIndexer: a pack comes from whatever server the
// job names. The first input byte picks how the rest is used:
//   even: as a whole pack, with its trailing checksum made right (so that
//         mutations of headers, sizes, offsets and base ids reach delta
//         resolution instead of failing the checksum);
//   odd:  as a blob (up to the first 0xff 0xfe pair) and a delta's raw
//         instructions (the rest), packed by this harness as a valid pack
//         of one blob and one offset delta on it, so that any instruction
//         stream reaches delta application.
// Beyond "no crash, no sanitizer report":
//   - rejections are kDataLoss (malformed) or kResourceExhausted (a stated
//     size that does not fit in memory) and leave no file behind;
//   - an accepted pack leaves exactly pack-<name>.pack and .idx.
// Any violation calls abort() so the fuzzer records the input.
#include <openssl/evp.h>
#include <unistd.h>
#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "ciagent/git/internal/pack_indexer.h"

namespace {

namespace fs = std::filesystem;

void Check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "pack_indexer_fuzzer: violated: %s\n", what);
    std::abort();
  }
}

std::string Sha1(absl::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &length, EVP_sha1(), nullptr);
  return std::string(reinterpret_cast<char*>(digest), length);
}

std::string Deflate(absl::string_view bytes) {
  uLongf size = compressBound(bytes.size());
  std::string out(size, '\0');
  compress(reinterpret_cast<Bytef*>(out.data()), &size,
           reinterpret_cast<const Bytef*>(bytes.data()), bytes.size());
  out.resize(size);
  return out;
}

// An entry header: type and inflated size.
std::string EntryHeader(int type, size_t size) {
  std::string header;
  uint8_t byte = static_cast<uint8_t>((type << 4) | (size & 15));
  size >>= 4;
  while (size != 0) {
    header.push_back(static_cast<char>(byte | 0x80));
    byte = size & 0x7f;
    size >>= 7;
  }
  header.push_back(static_cast<char>(byte));
  return header;
}

std::string PackOfBlobAndDelta(absl::string_view input) {
  const size_t split = input.find("\xff\xfe");
  const absl::string_view blob = input.substr(0, split);
  const absl::string_view delta =
      split == absl::string_view::npos ? "" : input.substr(split + 2);
  std::string pack("PACK\0\0\0\2\0\0\0\2", 12);
  const size_t blob_offset = pack.size();
  pack += EntryHeader(3, blob.size()) + Deflate(blob);
  const size_t delta_offset = pack.size();
  pack += EntryHeader(6, delta.size());
  // The distance back to the base, in git's offset encoding.
  size_t distance = delta_offset - blob_offset;
  std::string encoded(1, static_cast<char>(distance & 0x7f));
  while (distance >>= 7) {
    --distance;
    encoded.insert(encoded.begin(),
                   static_cast<char>(0x80 | (distance & 0x7f)));
  }
  pack += encoded + Deflate(delta);
  return pack + Sha1(pack);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const absl::string_view rest(reinterpret_cast<const char*>(data) + 1,
                               size - 1);
  std::string pack;
  if (data[0] % 2 == 0) {
    pack = std::string(rest);
    if (pack.size() >= 32) {
      pack.resize(pack.size() - 20);
      pack += Sha1(pack);
    }
  } else {
    pack = PackOfBlobAndDelta(rest);
  }

  static const std::string dir = [] {
    std::string path =
        (fs::temp_directory_path() / "pack-fuzz-XXXXXX").string();
    Check(mkdtemp(path.data()) != nullptr, "a temporary directory");
    return path;
  }();
  auto indexer = ciagent::PackIndexer::Create(dir, {.threads = 2});
  Check(indexer.ok(), "an indexer");
  absl::Status status = (*indexer)->Append(pack);
  absl::StatusOr<std::string> name =
      status.ok() ? (*indexer)->Commit() : absl::StatusOr<std::string>(status);
  indexer->reset();
  size_t files = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    ++files;
    if (name.ok()) {
      const std::string file = entry.path().filename().string();
      Check(file == absl::StrCat("pack-", *name, ".pack") ||
                file == absl::StrCat("pack-", *name, ".idx"),
            "an accepted pack leaves its pack and .idx");
    }
    fs::permissions(entry.path(), fs::perms::owner_write,
                    fs::perm_options::add);
    fs::remove(entry.path());
  }
  if (name.ok()) {
    Check(files == 2, "an accepted pack leaves exactly two files");
  } else {
    Check(name.status().code() == absl::StatusCode::kDataLoss ||
              name.status().code() == absl::StatusCode::kResourceExhausted,
          "rejections are kDataLoss (or kResourceExhausted: a stated size "
          "that does not fit in memory)");
    Check(files == 0, "a rejected pack leaves nothing");
  }
  return 0;
}
