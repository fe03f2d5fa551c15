// SentinelGroup: Redis as operators run it for high availability, for the
// failover tests: one master, replicas, three sentinels (all real
// redis-server processes on 127.0.0.1, each with its own temporary
// directory), master name "mymaster", down-after-milliseconds 1000.
//
//   ASSERT_OK_AND_ASSIGN(auto group, SentinelGroup::Start({}));
//   RedisOptions options = group->options();  // redis+sentinel://...
//   ASSERT_OK(group->Failover());             // SENTINEL FAILOVER, waited
//   group->master()->Kill();                  // or Pause(), Resume()
//   ASSERT_OK(group->WaitForNewMaster(old_port, absl::Seconds(30)));
//
// Start returns once every sentinel knows the other two and both replicas
// are in sync: a failover can then be decided.
#ifndef CIAGENT_TESTS_TESTING_REDIS_SENTINEL_H_
#define CIAGENT_TESTS_TESTING_REDIS_SENTINEL_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "ciagent/queue/redis_client.h"
#include "testing/redis_server.h"

namespace ciagent::testing {

struct SentinelGroupOptions {
  int replicas = 2;
  // The data servers' password (requirepass, masterauth).
  std::string password;
  // The sentinels' own password; empty for none.
  std::string sentinel_password;
};

class SentinelGroup {
 public:
  static absl::StatusOr<std::unique_ptr<SentinelGroup>> Start(
      SentinelGroupOptions options);

  // redis+sentinel://127.0.0.1:<s1>,127.0.0.1:<s2>,127.0.0.1:<s3>/mymaster
  std::string url() const;
  // Parsed from url(), with both passwords set.
  RedisOptions options() const;

  // The data server on `port`, or null.
  RedisServer* server(int port) const;
  std::vector<RedisServer*> sentinels() const;
  // The port the sentinels name as master now (asks them in turn).
  absl::StatusOr<int> MasterPort() const;
  // The server the sentinels name as master now, or null.
  RedisServer* master() const;

  // SENTINEL FAILOVER, then waits for the new master (WaitForNewMaster).
  absl::Status Failover();
  // Waits until the sentinels name a master other than `old_port` and that
  // server says ROLE master.
  absl::Status WaitForNewMaster(int old_port, absl::Duration timeout);
  // Waits until the server on `port` says ROLE slave: the sentinels have
  // reconfigured a former master (and closed its clients' connections).
  absl::Status WaitUntilReplica(int port, absl::Duration timeout);

 private:
  SentinelGroup() = default;
  absl::StatusOr<RedisReply> AskSentinel(
      std::initializer_list<absl::string_view> command) const;
  absl::Status WaitUntilReady(absl::Duration timeout);

  SentinelGroupOptions options_;
  std::vector<std::unique_ptr<RedisServer>> servers_;  // [0] the first master
  std::vector<std::unique_ptr<RedisServer>> sentinels_;
};

}  // namespace ciagent::testing

// `...` is the SentinelGroupOptions: a variable or a braced initializer.
#define CIAGENT_START_SENTINEL_GROUP(var, ...) \
  CIAGENT_TESTING_START_SERVICE_(SentinelGroup, var, __VA_ARGS__)

#endif  // CIAGENT_TESTS_TESTING_REDIS_SENTINEL_H_
