// What the queue's tests share: a job that passes every rule, and a stream
// read back as field maps (dead letters, a job's log, ...).
//
//   ASSERT_OK(queue.Enqueue(ExampleJob("push-1")).status());
//   for (auto& fields : StreamEntries(redis_options, "ci-jobs:dead")) ...
#ifndef CIAGENT_TESTS_TESTING_QUEUE_FIXTURES_H_
#define CIAGENT_TESTS_TESTING_QUEUE_FIXTURES_H_

#include <map>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "ciagent/job/job.h"
#include "ciagent/queue/redis_client.h"

namespace ciagent::testing {

// A valid job named `job_id`: repository https://git.example.com/acme/app.git,
// branch main, commit "a" × 40.
inline Job ExampleJob(absl::string_view job_id) {
  return Job{.job_id = std::string(job_id),
             .repo = "https://git.example.com/acme/app.git",
             .branch = "main",
             .commit = std::string(40, 'a')};
}

// Every entry of stream `key`, oldest first, each as field => value; empty
// when the stream is missing or Redis cannot be read.
inline std::vector<std::map<std::string, std::string>> StreamEntries(
    const RedisOptions& redis, const std::string& key) {
  RedisClient client(redis);
  std::vector<std::map<std::string, std::string>> entries;
  absl::StatusOr<RedisReply> reply = client.Command({"XRANGE", key, "-", "+"});
  if (!reply.ok()) return entries;
  for (const RedisReply& entry : reply->elements) {
    std::map<std::string, std::string>& fields = entries.emplace_back();
    const std::vector<RedisReply>& kv = entry.elements[1].elements;
    for (size_t i = 0; i + 1 < kv.size(); i += 2) {
      fields[kv[i].str] = kv[i + 1].str;
    }
  }
  return entries;
}

}  // namespace ciagent::testing

#endif  // CIAGENT_TESTS_TESTING_QUEUE_FIXTURES_H_
