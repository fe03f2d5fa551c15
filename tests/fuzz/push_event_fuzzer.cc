// libFuzzer target for the push-event reader (webhook/push_event.h). The
// input is a delivery's body; the fuzzer signs it with a fixed secret, as
// the forge would, so every input reaches the JSON reader and the mapping.
// Beyond "no crash, no sanitizer report", it checks:
//   - the answer is one of 202, 400, 403 (a correctly signed body is never
//     a 401), and a refusal or an ignore says why;
//   - a job comes only with 202, is one the queue accepts as it is
//     (ParseJob(JobToJson(job)) == job), and its id is PushJobId of its
//     repository, branch and commit;
//   - the same body with one flipped signature digit is a 401 without a job.
// Any violation calls abort() so the fuzzer records the input.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/string_view.h"
#include "ciagent/job/job.h"
#include "ciagent/webhook/push_event.h"

namespace {

constexpr char kSecret[] = "fuzz-secret";

void Check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "push_event_fuzzer: violated: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ciagent::WebhookDelivery delivery;
  delivery.event = "push";
  delivery.body.assign(reinterpret_cast<const char*>(data), size);
  delivery.gitea_signature = ciagent::PushSignature(kSecret, delivery.body);
  ciagent::PushEventOptions options;
  options.allowed_hosts = {"gitea.example.com", "127.0.0.1:3000"};
  options.branches = {"main", "release/*"};

  const ciagent::PushDecision decision =
      ciagent::DecidePush(delivery, kSecret, options);
  Check(decision.http_status == 202 || decision.http_status == 400 ||
            decision.http_status == 403,
        "a signed delivery is answered 202, 400 or 403");
  Check(!decision.reason.empty(), "every decision says why");
  if (decision.job.has_value()) {
    const ciagent::Job& job = *decision.job;
    Check(decision.http_status == 202, "a job comes with 202");
    const absl::StatusOr<ciagent::Job> again =
        ciagent::ParseJob(ciagent::JobToJson(job));
    Check(again.ok() && *again == job, "the job is one the queue accepts");
    Check(job.job_id == ciagent::PushJobId(job.repo, job.branch, job.commit),
          "the job id is derived from the push");
  }

  std::string& signature = delivery.gitea_signature;
  signature[0] = signature[0] == '0' ? '1' : '0';
  const ciagent::PushDecision forged =
      ciagent::DecidePush(delivery, kSecret, options);
  Check(forged.http_status == 401 && !forged.job.has_value(),
        "a wrong signature is a 401 without a job");
  return 0;
}
