// pack_index: indexes one pack file, timed, for scripts/bench-fetch.sh —
// libciagent's PackIndexer side by side with libgit2's own indexer (what a
// fetch used before) on the same bytes; the script adds `git index-pack`.
//
//   pack_index ciagent|libgit2 PACK OUT_DIR [THREADS]
//
// Feeds PACK in 64 KiB chunks, as a fetch receives it, and writes
// OUT_DIR/pack-<sha>.{pack,idx}. Prints one JSON line on stdout:
//
//   {"seconds":1.234,"objects":65555}
//
// `seconds` covers the whole indexing (chunks appended, deltas resolved,
// files written), process start-up excluded. Exit status 1 with the error
// on stderr when indexing fails, 2 on wrong usage.
#include <git2.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "ciagent/git/internal/pack_indexer.h"

namespace {

constexpr size_t kChunk = 64 << 10;

int Fail(const std::string& message) {
  std::fprintf(stderr, "pack_index: %s\n", message.c_str());
  return 1;
}

// Returns the number of objects indexed, or -1 after printing the error.
long long IndexWithCiagent(const std::string& pack, const std::string& out,
                           int threads) {
  auto indexer = ciagent::PackIndexer::Create(out, {.threads = threads});
  absl::Status status = indexer.status();
  for (size_t pos = 0; status.ok() && pos < pack.size(); pos += kChunk) {
    status = (*indexer)->Append(absl::string_view(pack).substr(pos, kChunk));
  }
  if (status.ok()) status = (*indexer)->Commit().status();
  if (!status.ok()) {
    Fail(status.ToString());
    return -1;
  }
  return (*indexer)->progress().indexed_objects;
}

long long IndexWithLibgit2(const std::string& pack, const std::string& out) {
  git_libgit2_init();
  git_indexer* indexer = nullptr;
  git_indexer_progress stats = {};
  int rc = git_indexer_new(&indexer, out.c_str(), 0, nullptr, nullptr);
  for (size_t pos = 0; rc == 0 && pos < pack.size(); pos += kChunk) {
    rc = git_indexer_append(indexer, pack.data() + pos,
                            std::min(kChunk, pack.size() - pos), &stats);
  }
  if (rc == 0) rc = git_indexer_commit(indexer, &stats);
  git_indexer_free(indexer);
  if (rc != 0) {
    const git_error* e = git_error_last();
    Fail(e != nullptr ? e->message : "libgit2 indexer failed");
    return -1;
  }
  return stats.indexed_objects;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 0;
  const bool usage_ok =
      (argc == 4 || (argc == 5 && absl::SimpleAtoi(argv[4], &threads))) &&
      (absl::string_view(argv[1]) == "ciagent" ||
       absl::string_view(argv[1]) == "libgit2");
  if (!usage_ok) {
    std::fprintf(stderr,
                 "usage: pack_index ciagent|libgit2 PACK OUT_DIR [THREADS]\n");
    return 2;
  }
  std::ifstream file(argv[2], std::ios::binary);
  const std::string pack((std::istreambuf_iterator<char>(file)),
                         std::istreambuf_iterator<char>());
  if (!file.good() && !file.eof()) return Fail("cannot read the pack");

  const absl::Time start = absl::Now();
  const long long objects = absl::string_view(argv[1]) == "ciagent"
                                ? IndexWithCiagent(pack, argv[3], threads)
                                : IndexWithLibgit2(pack, argv[3]);
  const absl::Duration elapsed = absl::Now() - start;
  if (objects < 0) return 1;
  std::printf("{\"seconds\":%.3f,\"objects\":%lld}\n",
              absl::ToDoubleSeconds(elapsed), objects);
  return 0;
}
