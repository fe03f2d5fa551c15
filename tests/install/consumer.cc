// A program embedding libciagent through its installed headers and
// pkg-config file, as another service would.
#include <cstdio>

#include "ciagent/job/job.h"
#include "ciagent/queue/job_queue.h"

int main() {
  absl::StatusOr<ciagent::Job> job = ciagent::ParseJob(
      R"({"job_id":"embedded","repo":"https://git.example.com/a/b.git",)"
      R"("branch":"main","commit":"0123456789abcdef0123456789abcdef01234567"})");
  if (!job.ok()) return 1;
  ciagent::QueueOptions options;
  std::printf("%s\n", options.StatusKey(job->job_id).c_str());
  return 0;
}
