#include "ciagent/webhook/push_receiver.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "ciagent/base/json_writer.h"
#include "ciagent/base/log.h"

namespace ciagent {
namespace {

std::string OutcomeOf(int status) {
  switch (status) {
    case 400:
      return "bad_request";
    case 401:
      return "unauthorized";
    case 403:
      return "forbidden";
    default:
      return "ignored";
  }
}

}  // namespace

PushReceiver::PushReceiver(const RedisOptions& redis, const QueueOptions& queue,
                           PushReceiverOptions options)
    : options_(std::move(options)), queue_(redis, queue) {}

WebhookResponse PushReceiver::Receive(const WebhookDelivery& delivery) {
  PushDecision decision =
      DecidePush(delivery, options_.secret, options_.events);
  WebhookResponse response;
  response.status = decision.http_status;
  JsonObjectBuilder body;
  if (!decision.job.has_value()) {
    response.outcome = OutcomeOf(decision.http_status);
    body.Add("outcome", response.outcome).Add("reason", decision.reason);
  } else {
    const Job& job = *decision.job;
    absl::StatusOr<std::optional<std::string>> added;
    {
      absl::MutexLock lock(&queue_mutex_);
      added = queue_.EnqueueIfNew(job);
    }
    if (!added.ok()) {
      response.status = 503;
      response.outcome = "unavailable";
      decision.reason = std::string(added.status().message());
      body.Add("outcome", response.outcome).Add("reason", decision.reason);
    } else {
      response.outcome = added->has_value() ? "enqueued" : "duplicate";
      body.Add("outcome", response.outcome).Add("job_id", job.job_id);
      if (added->has_value()) body.Add("stream_id", **added);
    }
  }
  response.body = std::move(body).Build();
  const std::initializer_list<LogField> fields = {
      {"delivery", delivery.delivery_id},
      {"outcome", response.outcome},
      {"status", response.status},
      {"reason", decision.reason},
      {"job_id", decision.job.has_value() ? decision.job->job_id : ""}};
  if (response.status >= 400) {
    LogWarning("webhook delivery refused", fields);
  } else {
    LogInfo("webhook delivery", fields);
  }
  return Count(std::move(response));
}

WebhookResponse PushReceiver::Count(WebhookResponse response) {
  const std::string& o = response.outcome;
  std::atomic<int64_t>& counter =
      o == "enqueued"       ? enqueued_
      : o == "duplicate"    ? duplicate_
      : o == "unauthorized" ? unauthorized_
      : o == "bad_request"  ? bad_request_
      : o == "forbidden"    ? forbidden_
      : o == "unavailable"  ? unavailable_
                            : ignored_;
  counter.fetch_add(1, std::memory_order_relaxed);
  return response;
}

std::string PushReceiver::MetricsText() const {
  std::string text =
      "# HELP ciagent_webhook_deliveries_total Webhook deliveries by "
      "outcome.\n# TYPE ciagent_webhook_deliveries_total counter\n";
  const std::pair<const char*, const std::atomic<int64_t>*> counters[] = {
      {"enqueued", &enqueued_},         {"duplicate", &duplicate_},
      {"ignored", &ignored_},           {"unauthorized", &unauthorized_},
      {"bad_request", &bad_request_},   {"forbidden", &forbidden_},
      {"unavailable", &unavailable_}};
  for (const auto& [outcome, counter] : counters) {
    absl::StrAppend(&text, "ciagent_webhook_deliveries_total{outcome=\"",
                    outcome, "\"} ", counter->load(std::memory_order_relaxed),
                    "\n");
  }
  return text;
}

}  // namespace ciagent
