// Fetches one commit through the mirror cache and exits: 0 on success.
// Tests run two at once to prove that agents sharing a cache volume do not
// trip over each other.
//
// Usage: fetch_once URL BRANCH COMMIT DEST CACHE_DIR
#include <cstdio>

#include "ciagent/git/fetch.h"

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: fetch_once URL BRANCH COMMIT DEST CACHE_DIR\n");
    return 2;
  }
  ciagent::FetchOptions options;
  options.cache_dir = argv[5];
  absl::StatusOr<ciagent::FetchResult> result =
      ciagent::FetchCommit(argv[1], argv[2], argv[3], argv[4], options);
  if (!result.ok()) {
    std::fprintf(stderr, "%s\n", result.status().ToString().c_str());
    return 1;
  }
  return 0;
}
