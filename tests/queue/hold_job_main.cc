// A consumer that claims one job and holds it, renewing its lease, until it
// is killed. Integration tests SIGKILL it to play an agent that crashed.
//
// Usage: hold_job <redis_url> <stream> <group> <consumer> <lease_ms>
// Prints "claimed <stream_id> <attempt>" on stdout once it owns a job.
#include <cstdio>
#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/time/clock.h"
#include "ciagent/queue/job_queue.h"
#include "ciagent/queue/lease_renewer.h"

int main(int argc, char** argv) {
  using namespace ciagent;
  int lease_ms = 0;
  if (argc != 6 || !absl::SimpleAtoi(argv[5], &lease_ms)) {
    std::fprintf(stderr, "usage: hold_job URL STREAM GROUP CONSUMER LEASE_MS\n");
    return 2;
  }
  absl::StatusOr<RedisOptions> redis = RedisOptionsFromUrl(argv[1]);
  if (!redis.ok()) return 2;
  QueueOptions options;
  options.stream = argv[2];
  options.group = argv[3];
  options.consumer = argv[4];
  options.lease = absl::Milliseconds(lease_ms);
  options.renew_interval = options.lease / 4;
  JobQueue queue(*redis, options);
  absl::StatusOr<ClaimedJob> claim = queue.Claim(absl::Seconds(30));
  if (!claim.ok()) {
    std::fprintf(stderr, "%s\n", claim.status().ToString().c_str());
    return 1;
  }
  LeaseRenewer renewer(*redis, options, *claim);
  std::printf("claimed %s %d\n", claim->stream_id.c_str(), claim->attempt);
  std::fflush(stdout);
  while (true) absl::SleepFor(absl::Seconds(1));
}
