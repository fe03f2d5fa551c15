// Redis over TLS against a real redis-server serving only TLS (tls-port,
// tls-auth-clients yes), with certificates made by openssl for this test:
// the queue's claim → finalize over rediss://, the settings read from the
// environment as the tools read them, and the refusals a user meets first.
#include <cstdlib>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "ciagent/queue/job_queue.h"
#include "ciagent/queue/redis_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/queue_fixtures.h"
#include "testing/redis_server.h"
#include "testing/status_matchers.h"
#include "testing/test_certs.h"

namespace ciagent {
namespace {

using ::ciagent::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

// Sets environment variables for one test, restoring them afterwards.
class ScopedEnv {
 public:
  ~ScopedEnv() {
    for (const auto& [name, value] : saved_) {
      if (value.has_value()) {
        setenv(name.c_str(), value->c_str(), 1);
      } else {
        unsetenv(name.c_str());
      }
    }
  }
  void Set(const std::string& name, const std::string& value) {
    if (!saved_.contains(name)) {
      const char* old = std::getenv(name.c_str());
      saved_[name] = old != nullptr ? std::optional<std::string>(old)
                                    : std::nullopt;
    }
    setenv(name.c_str(), value.c_str(), 1);
  }

 private:
  std::map<std::string, std::optional<std::string>> saved_;
};

class RedisTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(dir_, testing::MakeTempDir("ciagent-redis-tls-"));
    ASSERT_OK_AND_ASSIGN(certs_, testing::MakeServerCertificates(dir_ + "/ca"));
    ASSERT_OK_AND_ASSIGN(client_, testing::MakeClientCertificate(dir_ + "/ca"));
    testing::RedisServerOptions server;
    server.tls = certs_;
    server.require_client_certificate = true;
    server.password = "tls-test-password";
    CIAGENT_START_REDIS_WITH(started, server);
    server_ = std::move(started);
    for (const char* name : {"REDIS_CA_FILE", "CI_CA_FILE", "REDIS_PASSWORD",
                             "REDIS_TLS_CERT_FILE", "REDIS_TLS_KEY_FILE",
                             "REDIS_PASSWORD_FILE", "SSL_CERT_FILE"}) {
      env_.Set(name, "");
      unsetenv(name);
    }
    env_.Set("REDIS_PASSWORD", "tls-test-password");
  }

  void TearDown() override { testing::RemoveTree(dir_); }

  // Options as a tool makes them: the URL, then the environment.
  absl::StatusOr<RedisOptions> OptionsFor(const std::string& url) {
    absl::StatusOr<RedisOptions> options = RedisOptionsFromUrl(url);
    if (!options.ok()) return options;
    absl::Status applied = ApplyRedisEnvironment(&*options);
    if (!applied.ok()) return applied;
    return options;
  }

  void UseClientCertificate() {
    env_.Set("REDIS_TLS_CERT_FILE", client_.cert_file);
    env_.Set("REDIS_TLS_KEY_FILE", client_.key_file);
  }

  // The options of a client that gets in (CA and client certificate).
  RedisOptions Trusted() {
    RedisOptions options;
    options.port = server_->port();
    options.tls = true;
    options.tls_files = {.ca_file = certs_.ca_file,
                         .cert_file = client_.cert_file,
                         .key_file = client_.key_file};
    options.password = "tls-test-password";
    return options;
  }

  int64_t PendingCount() {
    RedisClient client(Trusted());
    auto reply = client.Command({"XPENDING", "ci-jobs", "ci-workers"});
    return reply.ok() ? reply->elements[0].integer : -1;
  }

  std::string dir_;
  testing::ServerCertificates certs_;
  testing::ClientCertificate client_;
  std::unique_ptr<testing::RedisServer> server_;
  ScopedEnv env_;
};

TEST_F(RedisTlsTest, ClaimAndFinalizeOverRediss) {
  env_.Set("REDIS_CA_FILE", certs_.ca_file);
  UseClientCertificate();
  ASSERT_OK_AND_ASSIGN(RedisOptions options, OptionsFor(server_->url()));
  EXPECT_TRUE(options.tls);
  EXPECT_EQ(RedactedRedisUrl(options),
            absl::StrCat("rediss://127.0.0.1:", server_->port(), "/0"));

  JobQueue producer(options, QueueOptions{});
  ASSERT_OK(producer.Enqueue(testing::ExampleJob("tls-1")).status());
  QueueOptions agent_options;
  agent_options.consumer = "agent-1";
  JobQueue agent(options, agent_options);
  ASSERT_OK_AND_ASSIGN(ClaimedJob claim, agent.Claim(absl::Seconds(1)));
  EXPECT_EQ(claim.job.job_id, "tls-1");
  ASSERT_OK(agent.Renew(claim).status());
  ASSERT_OK(agent.Finalize(claim, {JobStatus::kSuccess}));

  RedisClient reader(options);
  ASSERT_OK_AND_ASSIGN(
      RedisReply status,
      reader.Command({"HGET", QueueOptions().StatusKey("tls-1"), "status"}));
  EXPECT_EQ(status.str, "success");
  EXPECT_EQ(PendingCount(), 0);
}

TEST_F(RedisTlsTest, CiCaFileServesWhenRedisCaFileIsUnset) {
  env_.Set("CI_CA_FILE", certs_.ca_file);
  UseClientCertificate();
  ASSERT_OK_AND_ASSIGN(RedisOptions options, OptionsFor(server_->url()));
  RedisClient client(options);
  EXPECT_OK(client.Command({"PING"}).status());
}

TEST_F(RedisTlsTest, SystemStoreFromSslCertFile) {
  env_.Set("SSL_CERT_FILE", certs_.ca_file);
  UseClientCertificate();
  ASSERT_OK_AND_ASSIGN(RedisOptions options, OptionsFor(server_->url()));
  EXPECT_EQ(options.tls_files.ca_file, "");
  RedisClient client(options);
  EXPECT_OK(client.Command({"PING"}).status());
}

TEST_F(RedisTlsTest, ReachedByNameAsWellAsByAddress) {
  env_.Set("REDIS_CA_FILE", certs_.ca_file);
  UseClientCertificate();
  // The certificate names IP:127.0.0.1 and DNS:localhost.
  ASSERT_OK_AND_ASSIGN(
      RedisOptions options,
      OptionsFor(absl::StrCat("rediss://localhost:", server_->port(), "/0")));
  RedisClient client(options);
  EXPECT_OK(client.Command({"PING"}).status());
}

TEST_F(RedisTlsTest, NoClientCertificateIsAClearErrorAndClaimsNothing) {
  QueueOptions queue_options;
  JobQueue producer(Trusted(), queue_options);
  ASSERT_OK(producer.Enqueue(testing::ExampleJob("tls-2")).status());

  env_.Set("REDIS_CA_FILE", certs_.ca_file);
  ASSERT_OK_AND_ASSIGN(RedisOptions options, OptionsFor(server_->url()));
  queue_options.consumer = "agent-without-certificate";
  JobQueue agent(options, queue_options);
  EXPECT_THAT(agent.Claim(absl::Seconds(1)),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("refused the client certificate"),
                             HasSubstr("REDIS_TLS_CERT_FILE"))));
  EXPECT_EQ(PendingCount(), 0);
}

TEST_F(RedisTlsTest, WrongCaIsAClearErrorAndClaimsNothing) {
  QueueOptions queue_options;
  JobQueue producer(Trusted(), queue_options);
  ASSERT_OK(producer.Enqueue(testing::ExampleJob("tls-3")).status());

  ASSERT_OK_AND_ASSIGN(testing::ServerCertificates other,
                       testing::MakeServerCertificates(dir_ + "/other"));
  env_.Set("REDIS_CA_FILE", other.ca_file);
  UseClientCertificate();
  ASSERT_OK_AND_ASSIGN(RedisOptions options, OptionsFor(server_->url()));
  queue_options.consumer = "agent-with-wrong-ca";
  JobQueue agent(options, queue_options);
  EXPECT_THAT(agent.Claim(absl::Seconds(1)),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("TLS to 127.0.0.1"),
                             HasSubstr("unknown issuer"),
                             HasSubstr("REDIS_CA_FILE"))));
  EXPECT_EQ(PendingCount(), 0);
}

TEST_F(RedisTlsTest, CertificateWithoutTheAddressIsANameMismatch) {
  testing::RedisServerOptions server;
  ASSERT_OK_AND_ASSIGN(
      server.tls,
      testing::MakeServerCertificates(dir_ + "/by-name",
                                      {.subject_alt_names = "DNS:localhost"}));
  CIAGENT_START_REDIS_WITH(by_name, server);
  RedisOptions options;
  options.port = by_name->port();
  options.tls = true;
  options.tls_files.ca_file = server.tls->ca_file;
  RedisClient client(options);
  EXPECT_THAT(client.Command({"PING"}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("does not name 127.0.0.1 (no IP address "
                                 "entry in subjectAltName)")));
  options.host = "localhost";
  RedisClient by_its_name(options);
  EXPECT_OK(by_its_name.Command({"PING"}).status());
}

TEST_F(RedisTlsTest, PlainClientToATlsPortFailsWithinTheTimeout) {
  RedisOptions options;
  options.port = server_->port();
  options.command_timeout = absl::Seconds(1);
  RedisClient client(options);
  EXPECT_THAT(client.Command({"PING"}),
              StatusIs(absl::StatusCode::kUnavailable));
}

TEST_F(RedisTlsTest, OnlyOneOfCertificateAndKeyIsRefused) {
  env_.Set("REDIS_TLS_CERT_FILE", client_.cert_file);
  EXPECT_THAT(OptionsFor(server_->url()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("REDIS_TLS_KEY_FILE")));
}

}  // namespace
}  // namespace ciagent
