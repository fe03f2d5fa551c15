// PushReceiver: a verified push delivery becomes a job on the queue, once.
// What an HTTP server calls for each POST (ci-queue webhook serves it; the
// API service can embed it in its own server).
//
// Receive() decides the delivery (push_event.h), enqueues the job with
// JobQueue::EnqueueIfNew (its id derived from the push, so a forge's
// redelivery finds it known and enqueues nothing) and answers:
//   202 {"outcome":"enqueued","job_id":...,"stream_id":...}
//   202 {"outcome":"duplicate","job_id":...}   known already
//   202 {"outcome":"ignored","reason":...}
//   400 / 401 / 403 {"outcome":"bad_request"|"unauthorized"|"forbidden",
//                    "reason":...}: nothing enqueued
//   503 {"outcome":"unavailable","reason":...}   Redis unreachable: the
//        forge retries the delivery later
// Every delivery is logged with its delivery id, outcome and reason (never
// the body or the signature). Counters by outcome are kept for /metrics.
//
// Thread-safety: Receive() and MetricsText() may be called from any number
// of threads; calls to the queue are serialised (one Redis connection).
#ifndef CIAGENT_WEBHOOK_PUSH_RECEIVER_H_
#define CIAGENT_WEBHOOK_PUSH_RECEIVER_H_

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "ciagent/queue/job_queue.h"
#include "ciagent/queue/redis_client.h"
#include "ciagent/webhook/push_event.h"

namespace ciagent {

struct PushReceiverOptions {
  PushEventOptions events;
  // The shared secret of the webhook (secret: never logged).
  std::string secret;
};

struct WebhookResponse {
  int status = 500;
  // "enqueued", "duplicate", "ignored", "unauthorized", "bad_request",
  // "forbidden", "unavailable".
  std::string outcome;
  // JSON object, as documented above.
  std::string body;
};

class PushReceiver {
 public:
  PushReceiver(const RedisOptions& redis, const QueueOptions& queue,
               PushReceiverOptions options);

  WebhookResponse Receive(const WebhookDelivery& delivery);

  // Prometheus text exposition: ciagent_webhook_deliveries_total{outcome}.
  std::string MetricsText() const;

 private:
  WebhookResponse Count(WebhookResponse response);

  const PushReceiverOptions options_;
  absl::Mutex queue_mutex_;
  JobQueue queue_ ABSL_GUARDED_BY(queue_mutex_);
  std::atomic<int64_t> enqueued_{0}, duplicate_{0}, ignored_{0},
      unauthorized_{0}, bad_request_{0}, forbidden_{0}, unavailable_{0};
};

}  // namespace ciagent

#endif  // CIAGENT_WEBHOOK_PUSH_RECEIVER_H_
