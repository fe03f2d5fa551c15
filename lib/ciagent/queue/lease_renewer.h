// LeaseRenewer: keeps a claimed job's lease alive from a background thread
// while the job runs, and reports a lost lease or a cancel request.
//
// It renews every QueueOptions::renew_interval on its own Redis connection.
// A transient Redis error is retried with backoff until the next tick; a
// fenced refusal (the job was reclaimed by another agent) sets lease_lost()
// and ends renewal: the owner must stop working on the job and write nothing.
//
// Example:
//   LeaseRenewer renewer(redis_options, queue_options, claim);
//   while (build.Running()) {
//     if (renewer.lease_lost() || renewer.cancel_requested()) build.Kill();
//     ...
//   }
//   renewer.Stop();  // before Finalize or Requeue
//
// Thread-safety: all accessors may be called from any thread. Stop() and the
// destructor join the thread.
#ifndef CIAGENT_QUEUE_LEASE_RENEWER_H_
#define CIAGENT_QUEUE_LEASE_RENEWER_H_

#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "ciagent/queue/job_queue.h"
#include "ciagent/queue/redis_client.h"

namespace ciagent {

class LeaseRenewer {
 public:
  // Starts renewing `claim` at once in a new thread.
  LeaseRenewer(RedisOptions redis, QueueOptions options, ClaimedJob claim);
  ~LeaseRenewer();
  LeaseRenewer(const LeaseRenewer&) = delete;
  LeaseRenewer& operator=(const LeaseRenewer&) = delete;

  // Stops renewing; idempotent.
  void Stop();

  bool lease_lost() const;
  bool cancel_requested() const;
  std::string cancel_reason() const;
  // Successful renewals so far.
  int renewals() const;

  // Blocks until the lease is lost, a cancel is requested, or `timeout`
  // passes. Returns true in the first two cases.
  bool WaitForLossOrCancel(absl::Duration timeout) const;

 private:
  void Run();

  JobQueue queue_;
  const ClaimedJob claim_;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool lease_lost_ ABSL_GUARDED_BY(mu_) = false;
  bool cancel_requested_ ABSL_GUARDED_BY(mu_) = false;
  std::string cancel_reason_ ABSL_GUARDED_BY(mu_);
  int renewals_ ABSL_GUARDED_BY(mu_) = 0;

  std::thread thread_;
};

}  // namespace ciagent

#endif  // CIAGENT_QUEUE_LEASE_RENEWER_H_
