// fetch_source: one FetchCommit, timed, for scripts/bench-fetch.sh.
//
//   fetch_source URL BRANCH COMMIT DEST [CACHE_DIR]
//
// Checks out COMMIT of BRANCH into DEST (emptied first), through the mirror
// cache under CACHE_DIR when given, and prints one JSON line on stdout:
//
//   {"seconds":1.234,"warm":false,"reused":false,"transfer_seconds":0.8,
//    "checkout_seconds":0.4,"download_seconds":0.5,"received_bytes":123,
//    "received_objects":4}
//
// `seconds` is the wall-clock time of the FetchCommit call, process start-up
// excluded; `warm` says whether the mirror existed before the call;
// `reused` whether DEST held a previous work tree that was updated in place;
// `transfer_seconds` (fetch and indexing of the received pack) and
// `checkout_seconds` are its two phases; `download_seconds`, from the start
// until the last object arrived, is the part of the transfer before the
// deltas are resolved (0 when nothing was received); `received_*` are the
// totals of the transfer (zero when nothing was fetched). Submodules are not
// followed, as `git clone` without
// --recurse-submodules does not. Exit status 1 with the status on stderr
// when the fetch fails, 2 on wrong usage.
#include <cstdio>
#include <string>
#include <utility>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "ciagent/base/json_writer.h"
#include "ciagent/git/fetch.h"

int main(int argc, char** argv) {
  if (argc != 5 && argc != 6) {
    std::fprintf(stderr,
                 "usage: fetch_source URL BRANCH COMMIT DEST [CACHE_DIR]\n");
    return 2;
  }
  ciagent::FetchOptions options;
  if (argc == 6) options.cache_dir = argv[5];
  options.allow_file_urls = true;
  options.submodules = false;
  // One attempt: a retry would hide a failure inside the timing.
  options.max_attempts = 1;

  // When the last object arrived: the transfer phase splits there into the
  // download (with the objects indexed as they come) and the resolution of
  // the deltas, which libgit2 does after the download.
  absl::Time all_received = absl::InfinitePast();
  options.progress_interval = absl::ZeroDuration();
  options.on_progress = [&](const ciagent::FetchProgress& progress) {
    if (all_received == absl::InfinitePast() && progress.total_objects > 0 &&
        progress.received_objects == progress.total_objects) {
      all_received = absl::Now();
    }
  };

  const absl::Time start = absl::Now();
  absl::StatusOr<ciagent::FetchResult> result =
      ciagent::FetchCommit(argv[1], argv[2], argv[3], argv[4], options);
  const absl::Duration elapsed = absl::Now() - start;
  if (!result.ok()) {
    std::fprintf(stderr, "fetch_source: %s\n",
                 result.status().ToString().c_str());
    return 1;
  }

  // JsonObjectBuilder writes integers only; the seconds go in raw, with
  // millisecond resolution.
  auto seconds = [](absl::Duration d) {
    char text[32];
    std::snprintf(text, sizeof(text), "%.3f", absl::ToDoubleSeconds(d));
    return std::string(text);
  };
  ciagent::JsonObjectBuilder json;
  json.AddRaw("seconds", seconds(elapsed))
      .Add("warm", result->mirror_was_warm)
      .Add("reused", result->work_tree_reused)
      .AddRaw("transfer_seconds", seconds(result->transfer_duration))
      .AddRaw("checkout_seconds", seconds(result->checkout_duration))
      .AddRaw("download_seconds", seconds(all_received == absl::InfinitePast()
                                              ? absl::ZeroDuration()
                                              : all_received - start))
      .Add("received_bytes", result->transfer.received_bytes)
      .Add("received_objects", result->transfer.received_objects);
  std::printf("%s\n", std::move(json).Build().c_str());
  return 0;
}
