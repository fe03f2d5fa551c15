// DecidePush on push deliveries shaped as Gitea sends them
// (testdata/gitea_push.json follows Gitea's documented push payload):
// signatures, the mapping to a job, the job id that makes redeliveries
// harmless, what is ignored and what is refused.
#include "ciagent/webhook/push_event.h"

#include <cstdlib>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/subprocess.h"

namespace ciagent {
namespace {

using ::testing::HasSubstr;

constexpr char kSecret[] = "webhook-s3cret-5c2a";
constexpr char kCommit[] = "bffeb74224043ba2feb48d137756c8a9331c449a";

class PushEventTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* dir = std::getenv("CIAGENT_WEBHOOK_TESTDATA");
    ASSERT_NE(dir, nullptr);
    payload_ = testing::ReadFileOrEmpty(absl::StrCat(dir, "/gitea_push.json"));
    ASSERT_FALSE(payload_.empty());
    options_.allowed_hosts = {"gitea.example.com"};
  }

  // A delivery as Gitea makes it: events and signatures in its headers.
  WebhookDelivery Signed(std::string body, std::string event = "push") {
    WebhookDelivery delivery;
    delivery.event = std::move(event);
    delivery.delivery_id = "f6266f16-1bf3-46a5-9ea4-602e06ead473";
    delivery.gitea_signature = PushSignature(kSecret, body);
    delivery.hub_signature_256 = "sha256=" + PushSignature(kSecret, body);
    delivery.body = std::move(body);
    return delivery;
  }

  std::string With(absl::string_view from, absl::string_view to) const {
    return absl::StrReplaceAll(payload_, {{from, to}});
  }

  std::string payload_;
  PushEventOptions options_;
};

TEST_F(PushEventTest, APushBecomesAJobForItsBranchAndCommit) {
  options_.steps = {"check", "test"};
  options_.timeout = absl::Minutes(20);
  PushDecision decision = DecidePush(Signed(payload_), kSecret, options_);
  EXPECT_EQ(decision.http_status, 202);
  ASSERT_TRUE(decision.job.has_value()) << decision.reason;
  EXPECT_EQ(decision.job->repo, "https://gitea.example.com/acme/app.git");
  EXPECT_EQ(decision.job->branch, "main");
  EXPECT_EQ(decision.job->commit, kCommit);
  EXPECT_EQ(decision.job->steps, (std::vector<std::string>{"check", "test"}));
  EXPECT_EQ(decision.job->timeout, absl::Minutes(20));
  EXPECT_EQ(decision.job->job_id,
            PushJobId("https://gitea.example.com/acme/app.git", "main",
                      kCommit));
  // The job is one the queue accepts as it is.
  EXPECT_TRUE(ParseJob(JobToJson(*decision.job)).ok());
}

TEST(PushSignatureTest, IsHmacSha256AsRfc4231ComputesIt) {
  // RFC 4231, test case 2.
  EXPECT_EQ(PushSignature("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_TRUE(SignatureMatches(
      "Jefe", "what do ya want for nothing?",
      "5BDCC146BF60754E6A042426089575C75A003F089D2739839DEC58B964EC3843"));
}

TEST_F(PushEventTest, ACommitInUpperCaseIsTheSameJobAsTheQueueKeepsIt) {
  PushDecision decision = DecidePush(
      Signed(With(kCommit, absl::AsciiStrToUpper(kCommit))), kSecret, options_);
  ASSERT_TRUE(decision.job.has_value()) << decision.reason;
  EXPECT_EQ(decision.job->commit, kCommit);
  EXPECT_EQ(decision.job->job_id,
            PushJobId("https://gitea.example.com/acme/app.git", "main",
                      kCommit));
  absl::StatusOr<Job> parsed = ParseJob(JobToJson(*decision.job));
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(*parsed, *decision.job);
}

TEST_F(PushEventTest, TheSamePushAlwaysNamesTheSameJob) {
  const std::string id = PushJobId("https://h/a.git", "main", kCommit);
  EXPECT_EQ(id, PushJobId("https://h/a.git", "main", kCommit));
  EXPECT_THAT(id, ::testing::MatchesRegex("push-[0-9a-f]{24}"));
  EXPECT_NE(id, PushJobId("https://h/a.git", "dev", kCommit));
  EXPECT_NE(id, PushJobId("https://h/b.git", "main", kCommit));
  // The separator keeps fields apart: "ab"+"c" is not "a"+"bc".
  EXPECT_NE(PushJobId("r", "ab", "c"), PushJobId("r", "a", "bc"));
}

TEST_F(PushEventTest, SignaturesAreCheckedOverTheRawBody) {
  // Either header alone is enough, in either case of hex digits.
  WebhookDelivery gitea_only = Signed(payload_);
  gitea_only.hub_signature_256.clear();
  gitea_only.gitea_signature = absl::AsciiStrToUpper(gitea_only.gitea_signature);
  EXPECT_EQ(DecidePush(gitea_only, kSecret, options_).http_status, 202);
  WebhookDelivery hub_only = Signed(payload_);
  hub_only.gitea_signature.clear();
  EXPECT_EQ(DecidePush(hub_only, kSecret, options_).http_status, 202);

  // The body changed after signing (one space), another secret, no
  // signature, a SHA-1 signature only, a truncated one: 401.
  WebhookDelivery changed = Signed(payload_);
  changed.body += " ";
  EXPECT_EQ(DecidePush(changed, kSecret, options_).http_status, 401);
  EXPECT_EQ(DecidePush(Signed(payload_), "another-secret", options_).http_status,
            401);
  WebhookDelivery unsigned_delivery = Signed(payload_);
  unsigned_delivery.gitea_signature.clear();
  unsigned_delivery.hub_signature_256.clear();
  PushDecision missing = DecidePush(unsigned_delivery, kSecret, options_);
  EXPECT_EQ(missing.http_status, 401);
  EXPECT_THAT(missing.reason, HasSubstr("no signature"));
  unsigned_delivery.other_signature = true;
  PushDecision sha1 = DecidePush(unsigned_delivery, kSecret, options_);
  EXPECT_EQ(sha1.http_status, 401);
  EXPECT_THAT(sha1.reason, HasSubstr("only HMAC-SHA256"));
  WebhookDelivery truncated = Signed(payload_);
  truncated.gitea_signature.pop_back();
  EXPECT_EQ(DecidePush(truncated, kSecret, options_).http_status, 401);
  WebhookDelivery hub_prefix = Signed(payload_);
  hub_prefix.gitea_signature.clear();
  hub_prefix.hub_signature_256 = hub_prefix.hub_signature_256.substr(7);
  EXPECT_EQ(DecidePush(hub_prefix, kSecret, options_).http_status, 401);
}

TEST_F(PushEventTest, AnUnsignedDeliveryIsRefusedBeforeItsBodyIsRead) {
  WebhookDelivery delivery;
  delivery.event = "push";
  delivery.body = "not json at all";
  EXPECT_EQ(DecidePush(delivery, kSecret, options_).http_status, 401);
}

TEST_F(PushEventTest, OtherEventsDeletionsAndTagsAreIgnored) {
  PushDecision issue = DecidePush(Signed(payload_, "issues"), kSecret, options_);
  EXPECT_EQ(issue.http_status, 202);
  EXPECT_FALSE(issue.job.has_value());
  EXPECT_THAT(issue.reason, HasSubstr("not a push"));

  PushDecision deleted = DecidePush(
      Signed(With(absl::StrCat("\"after\": \"", kCommit),
                  "\"after\": \"0000000000000000000000000000000000000000")),
      kSecret, options_);
  EXPECT_FALSE(deleted.job.has_value());
  EXPECT_THAT(deleted.reason, HasSubstr("deleted"));

  PushDecision tag = DecidePush(
      Signed(With("\"refs/heads/main\"", "\"refs/tags/v1.2.0\"")), kSecret,
      options_);
  EXPECT_EQ(tag.http_status, 202);
  EXPECT_FALSE(tag.job.has_value());
  EXPECT_THAT(tag.reason, HasSubstr("not a branch: refs/tags/v1.2.0"));
}

TEST_F(PushEventTest, BranchFiltersSelectNamesAndOneLevelPatterns) {
  const std::vector<std::string> filters = {"main", "release/*"};
  EXPECT_TRUE(BranchSelected("main", filters));
  EXPECT_TRUE(BranchSelected("release/1.4", filters));
  EXPECT_FALSE(BranchSelected("release/1.4/hotfix", filters));
  EXPECT_FALSE(BranchSelected("mainline", filters));
  EXPECT_FALSE(BranchSelected("feature/x", filters));
  EXPECT_TRUE(BranchSelected("anything", {}));

  options_.branches = {"release/*"};
  PushDecision decision = DecidePush(Signed(payload_), kSecret, options_);
  EXPECT_EQ(decision.http_status, 202);
  EXPECT_FALSE(decision.job.has_value());
  EXPECT_THAT(decision.reason, HasSubstr("not selected by --branches"));
}

TEST_F(PushEventTest, RepositoriesOutsideTheAllowedHostsAreForbidden) {
  options_.allowed_hosts = {"gitea.internal"};
  PushDecision other = DecidePush(Signed(payload_), kSecret, options_);
  EXPECT_EQ(other.http_status, 403);
  EXPECT_THAT(other.reason, HasSubstr("\"gitea.example.com\" is not in"));

  options_.allowed_hosts = {"gitea.example.com"};
  PushDecision credentials = DecidePush(
      Signed(With("https://gitea.example.com/acme/app.git",
                  "https://ci:tok@gitea.example.com/acme/app.git")),
      kSecret, options_);
  EXPECT_EQ(credentials.http_status, 403);
  EXPECT_THAT(credentials.reason, ::testing::Not(HasSubstr("tok")));
}

TEST_F(PushEventTest, MalformedPushesAreBadRequests) {
  for (const std::string& body : {
           std::string("{\"ref\": \"refs/heads/main\"}"),
           std::string("[1, 2]"),
           std::string("{\"ref\": \"refs/heads/main\", \"after\": 7, "
                       "\"repository\": {\"clone_url\": \"https://x/y\"}}"),
           With(kCommit, "not-a-commit"),
           With("\"refs/heads/main\"", "\"refs/heads/bad..name\""),
           payload_.substr(0, payload_.size() / 2),
       }) {
    PushDecision decision = DecidePush(Signed(body), kSecret, options_);
    EXPECT_EQ(decision.http_status, 400) << body.substr(0, 80);
    EXPECT_FALSE(decision.job.has_value());
  }
}

}  // namespace
}  // namespace ciagent
