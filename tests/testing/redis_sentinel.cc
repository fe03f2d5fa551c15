#include "testing/redis_sentinel.h"

#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"

namespace ciagent::testing {
namespace {

constexpr char kMasterName[] = "mymaster";

// A field of an array of flat field/value arrays (SENTINEL replicas ...).
std::string Field(const RedisReply& flat, absl::string_view name) {
  for (size_t i = 0; i + 1 < flat.elements.size(); i += 2) {
    if (flat.elements[i].str == name) return flat.elements[i + 1].str;
  }
  return "";
}

}  // namespace

absl::StatusOr<std::unique_ptr<SentinelGroup>> SentinelGroup::Start(
    SentinelGroupOptions options) {
  std::unique_ptr<SentinelGroup> group(new SentinelGroup());
  group->options_ = std::move(options);
  RedisServerOptions master;
  master.password = group->options_.password;
  absl::StatusOr<std::unique_ptr<RedisServer>> started =
      RedisServer::Start(master);
  if (!started.ok()) return started.status();
  group->servers_.push_back(*std::move(started));
  const int master_port = group->servers_[0]->port();
  for (int i = 0; i < group->options_.replicas; ++i) {
    RedisServerOptions replica = master;
    replica.replica_of = master_port;
    started = RedisServer::Start(replica);
    if (!started.ok()) return started.status();
    group->servers_.push_back(*std::move(started));
  }
  for (int i = 0; i < 3; ++i) {
    RedisServerOptions sentinel;
    sentinel.sentinel_monitor = master_port;
    sentinel.master_password = group->options_.password;
    sentinel.password = group->options_.sentinel_password;
    started = RedisServer::Start(sentinel);
    if (!started.ok()) return started.status();
    group->sentinels_.push_back(*std::move(started));
  }
  if (absl::Status ready = group->WaitUntilReady(absl::Seconds(60));
      !ready.ok()) {
    return ready;
  }
  return group;
}

std::string SentinelGroup::url() const {
  std::vector<std::string> addresses;
  for (const auto& sentinel : sentinels_) {
    addresses.push_back(absl::StrCat("127.0.0.1:", sentinel->port()));
  }
  return absl::StrCat("redis+sentinel://", absl::StrJoin(addresses, ","), "/",
                      kMasterName);
}

RedisOptions SentinelGroup::options() const {
  RedisOptions options = *RedisOptionsFromUrl(url());
  options.password = options_.password;
  options.sentinel_password = options_.sentinel_password;
  return options;
}

RedisServer* SentinelGroup::server(int port) const {
  for (const auto& server : servers_) {
    if (server->port() == port) return server.get();
  }
  return nullptr;
}

std::vector<RedisServer*> SentinelGroup::sentinels() const {
  std::vector<RedisServer*> out;
  for (const auto& sentinel : sentinels_) out.push_back(sentinel.get());
  return out;
}

absl::StatusOr<RedisReply> SentinelGroup::AskSentinel(
    std::initializer_list<absl::string_view> command) const {
  absl::Status last = absl::UnavailableError("no sentinel");
  for (const auto& sentinel : sentinels_) {
    RedisOptions options;
    options.port = sentinel->port();
    options.password = options_.sentinel_password;
    options.connect_timeout = absl::Milliseconds(300);
    options.command_timeout = absl::Seconds(2);
    RedisClient client(options);
    absl::StatusOr<RedisReply> reply = client.Command(command);
    if (reply.ok()) return reply;
    last = reply.status();
  }
  return last;
}

absl::StatusOr<int> SentinelGroup::MasterPort() const {
  absl::StatusOr<RedisReply> reply =
      AskSentinel({"SENTINEL", "get-master-addr-by-name", kMasterName});
  if (!reply.ok()) return reply.status();
  int port = 0;
  if (!reply->is_array() || reply->elements.size() != 2 ||
      !absl::SimpleAtoi(reply->elements[1].str, &port)) {
    return absl::InternalError("sentinel: no master address");
  }
  return port;
}

RedisServer* SentinelGroup::master() const {
  absl::StatusOr<int> port = MasterPort();
  return port.ok() ? server(*port) : nullptr;
}

absl::Status SentinelGroup::WaitUntilReady(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  std::string missing;
  while (absl::Now() < deadline) {
    missing.clear();
    for (const auto& sentinel : sentinels_) {
      RedisOptions options;
      options.port = sentinel->port();
      options.password = options_.sentinel_password;
      RedisClient client(options);
      absl::StatusOr<RedisReply> others =
          client.Command({"SENTINEL", "sentinels", kMasterName});
      absl::StatusOr<RedisReply> replicas =
          client.Command({"SENTINEL", "replicas", kMasterName});
      int in_sync = 0;
      if (replicas.ok()) {
        for (const RedisReply& replica : replicas->elements) {
          if (Field(replica, "flags") == "slave" &&
              Field(replica, "master-link-status") == "ok") {
            ++in_sync;
          }
        }
      }
      if (!others.ok() || others->elements.size() != sentinels_.size() - 1 ||
          in_sync != options_.replicas) {
        absl::StrAppend(&missing, " sentinel ", sentinel->port(), ": ",
                        others.ok() ? others->elements.size() : 0,
                        " other sentinels, ", in_sync, " replicas in sync;");
      }
    }
    if (missing.empty()) return absl::OkStatus();
    absl::SleepFor(absl::Milliseconds(100));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("sentinel group not ready:", missing));
}

absl::Status SentinelGroup::Failover() {
  absl::StatusOr<int> old_port = MasterPort();
  if (!old_port.ok()) return old_port.status();
  absl::StatusOr<RedisReply> started =
      AskSentinel({"SENTINEL", "FAILOVER", kMasterName});
  if (!started.ok()) return started.status();
  return WaitForNewMaster(*old_port, absl::Seconds(30));
}

absl::Status SentinelGroup::WaitForNewMaster(int old_port,
                                             absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    absl::StatusOr<int> port = MasterPort();
    RedisServer* next = port.ok() && *port != old_port ? server(*port) : nullptr;
    if (next != nullptr) {
      RedisOptions options;
      options.port = next->port();
      options.password = options_.password;
      options.command_timeout = absl::Seconds(1);
      RedisClient client(options);
      absl::StatusOr<RedisReply> role = client.Command({"ROLE"});
      if (role.ok() && !role->elements.empty() &&
          role->elements[0].str == "master") {
        return absl::OkStatus();
      }
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("no new master after ", absl::FormatDuration(timeout)));
}

absl::Status SentinelGroup::WaitUntilReplica(int port,
                                             absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    RedisOptions options;
    options.port = port;
    options.password = options_.password;
    options.command_timeout = absl::Seconds(1);
    RedisClient client(options);
    absl::StatusOr<RedisReply> role = client.Command({"ROLE"});
    if (role.ok() && !role->elements.empty() &&
        role->elements[0].str == "slave") {
      return absl::OkStatus();
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  return absl::DeadlineExceededError(absl::StrCat(
      "server ", port, " not a replica after ", absl::FormatDuration(timeout)));
}

}  // namespace ciagent::testing
