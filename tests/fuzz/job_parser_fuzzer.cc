// libFuzzer target for the job parser. Beyond "no crash, no sanitizer
// report", it checks the properties the rest of the agent relies on:
//   - a job accepted without allow_file_urls is accepted with it, unchanged;
//   - an accepted document is valid JSON (simdjson DOM agrees);
//   - ParseJob(JobToJson(job)) == job, and JobToJson is a fixed point;
//   - ExtractJobId of an accepted job is its job_id;
//   - every rejection is kInvalidArgument with a short message.
// Any violation calls abort() so the fuzzer records the input.
#include <simdjson.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ciagent/job/job.h"

namespace {

void Check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "job_parser_fuzzer: violated: %s\n", what);
    std::abort();
  }
}

void CheckRejection(const absl::Status& status) {
  Check(status.code() == absl::StatusCode::kInvalidArgument,
        "rejections are kInvalidArgument");
  // Offending values are quoted in at most 64 bytes (escapes included), so
  // even the longest rule text keeps a message under 300 bytes.
  Check(status.message().size() < 300, "rejection messages are short");
}

void CheckAccepted(absl::string_view input, const ciagent::Job& job,
                   const ciagent::JobParseOptions& options) {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  Check(parser.parse(input.data(), input.size()).get(root) == simdjson::SUCCESS,
        "accepted documents are valid JSON");

  const std::string json = ciagent::JobToJson(job);
  const absl::StatusOr<ciagent::Job> again = ciagent::ParseJob(json, options);
  Check(again.ok(), "JobToJson output parses");
  Check(*again == job, "ParseJob(JobToJson(job)) == job");
  Check(ciagent::JobToJson(*again) == json, "JobToJson is canonical");

  const std::optional<std::string> job_id = ciagent::ExtractJobId(input);
  Check(job_id.has_value() && *job_id == job.job_id,
        "ExtractJobId finds the job_id of an accepted job");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);

  const ciagent::JobParseOptions strict;
  const ciagent::JobParseOptions with_files{.allow_file_urls = true};
  const absl::StatusOr<ciagent::Job> job = ciagent::ParseJob(input, strict);
  const absl::StatusOr<ciagent::Job> file_job =
      ciagent::ParseJob(input, with_files);

  if (job.ok()) {
    Check(file_job.ok() && *file_job == *job,
          "allow_file_urls only widens what is accepted");
    CheckAccepted(input, *job, strict);
  } else {
    CheckRejection(job.status());
  }
  if (file_job.ok()) {
    CheckAccepted(input, *file_job, with_files);
  } else {
    CheckRejection(file_job.status());
  }

  // Must not crash on anything; when it answers, the answer is a valid id.
  if (const std::optional<std::string> job_id = ciagent::ExtractJobId(input)) {
    Check(ciagent::ValidateJobId(*job_id).ok(), "extracted job_ids are valid");
  }
  return 0;
}
