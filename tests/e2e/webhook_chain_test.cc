// `ci-queue webhook` with real processes: what the receiver answers to each
// kind of request against a real Redis, and the whole flow the platform
// promises — a `git push` to the test git server, whose post-receive hook
// POSTs a Gitea-shaped push delivery (Gitea's headers, HMAC-SHA256
// signature) to the receiver; the job enqueued once even when the delivery
// comes again; the container entrypoint claiming it, building and testing
// the crate and pushing its image to a real registry.
#include <signal.h>
#include <simdjson.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "ciagent/net/http.h"
#include "ciagent/queue/job_queue.h"
#include "ciagent/queue/redis_client.h"
#include "ciagent/webhook/push_event.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/agent_pod.h"
#include "testing/buildah.h"
#include "testing/cargo_fixture.h"
#include "testing/git_repo.h"
#include "testing/git_server.h"
#include "testing/oci_layout.h"
#include "testing/redis_server.h"
#include "testing/registry_server.h"
#include "testing/status_matchers.h"
#include "testing/subprocess.h"

namespace ciagent {
namespace {

using ::ciagent::testing::InspectDigest;
using ::ciagent::testing::IsOkAndHolds;
using ::ciagent::testing::Subprocess;
using ::testing::HasSubstr;

constexpr char kSecret[] = "webhook-secret-7d6c5b";
constexpr char kGitToken[] = "git-token-hook-4a3b2c";
constexpr char kRegistryToken[] = "registry-token-hook-1f2e";

std::string Sign(const std::string& body) {
  return PushSignature(kSecret, body);
}

// A post-receive hook that delivers each pushed ref as Gitea does (its
// push payload's fields, its headers, the signature over the exact bytes
// sent), keeps the last delivery in `saved` for a redelivery, and prints
// the receiver's answer (the pusher sees it as "remote: ...").
constexpr char kHook[] = R"(#!/usr/bin/python3
import hashlib, hmac, json, sys, urllib.request, uuid
secret = open(SECRET_FILE, "rb").read().strip()
for line in sys.stdin:
    old, new, ref = line.split()
    commit = {"id": new, "message": "pushed\n", "url": CLONE_URL[:-4] + "/commit/" + new,
              "author": {"name": "Dana", "email": "dana@example.com", "username": "dana"},
              "committer": {"name": "Dana", "email": "dana@example.com", "username": "dana"},
              "timestamp": "2026-12-08T01:20:11Z", "added": [], "removed": [], "modified": []}
    body = json.dumps({
        "ref": ref, "before": old, "after": new,
        "compare_url": CLONE_URL[:-4] + "/compare/" + old + "..." + new,
        "commits": [commit], "total_commits": 1, "head_commit": commit,
        "repository": {"id": 7, "name": "app", "full_name": "acme/app",
                       "private": True, "clone_url": CLONE_URL,
                       "html_url": CLONE_URL[:-4], "default_branch": "main"},
        "pusher": {"id": 3, "login": "dana", "username": "dana"},
        "sender": {"id": 3, "login": "dana", "username": "dana"}}).encode()
    signature = hmac.new(secret, body, hashlib.sha256).hexdigest()
    delivery = str(uuid.uuid4())
    headers = {"Content-Type": "application/json", "X-Gitea-Event": "push",
               "X-Gitea-Delivery": delivery, "X-Gitea-Signature": signature,
               "X-GitHub-Event": "push", "X-GitHub-Delivery": delivery,
               "X-Gogs-Event": "push", "X-Gogs-Delivery": delivery,
               "X-Hub-Signature-256": "sha256=" + signature}
    with open(SAVED, "wb") as f:
        f.write(json.dumps({"headers": headers, "body": body.decode()}).encode())
    request = urllib.request.Request(RECEIVER, data=body, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as answer:
        print("webhook:", answer.status, answer.read().decode().strip())
)";

class WebhookTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(tool_, testing::PathFromEnv("CIAGENT_CI_QUEUE"));
    ASSERT_OK_AND_ASSIGN(dir_, testing::MakeTempDir("webhook"));
    ASSERT_OK(testing::WriteText(dir_ + "/secret", kSecret, 0600));
    CIAGENT_START_REDIS(redis);
    redis_ = std::move(redis);
    ASSERT_OK_AND_ASSIGN(redis_options_, RedisOptionsFromUrl(redis_->url()));
  }
  void TearDown() override {
    if (receiver_ != nullptr) receiver_->Kill();
    testing::RemoveTree(dir_);
  }

  // Starts `ci-queue webhook` on a free port with `flags`.
  void StartReceiver(std::vector<std::string> flags) {
    std::vector<std::string> argv = {tool_, "webhook", "--redis",
                                     redis_->url(), "--listen", "127.0.0.1:0"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    testing::SubprocessOptions options;
    options.env = {{"CI_WEBHOOK_SECRET_FILE", dir_ + "/secret"}};
    options.unset_env = {"CI_WEBHOOK_SECRET", "REDIS_PASSWORD",
                         "CIAGENT_LOG_LEVEL"};
    options.stdout_path = dir_ + "/receiver.out";
    options.stderr_path = dir_ + "/receiver.log";
    ASSERT_OK_AND_ASSIGN(receiver_, Subprocess::Start(argv, options));
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (port_ == 0 && absl::Now() < deadline && receiver_->running()) {
      const std::string out = testing::ReadFileOrEmpty(dir_ + "/receiver.out");
      const size_t at = out.find("(port ");
      if (at != std::string::npos) {
        ASSERT_TRUE(absl::SimpleAtoi(
            out.substr(at + 6, out.find(')', at) - at - 6), &port_));
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    ASSERT_NE(port_, 0) << testing::ReadFileOrEmpty(dir_ + "/receiver.log");
  }

  std::string Url(const std::string& path) const {
    return absl::StrCat("http://127.0.0.1:", port_, path);
  }

  HttpResponse Send(HttpRequest request) {
    absl::StatusOr<HttpResponse> response = http_->Send(request);
    EXPECT_OK(response.status());
    return response.value_or(HttpResponse{});
  }

  // A push delivery as Gitea signs it.
  HttpResponse Deliver(const std::string& body, const std::string& delivery,
                       const std::string& signature) {
    return Send({.method = "POST",
                 .url = Url("/webhook"),
                 .headers = {{"Content-Type", "application/json"},
                             {"X-Gitea-Event", "push"},
                             {"X-Gitea-Delivery", delivery},
                             {"X-Gitea-Signature", signature}},
                 .body = body});
  }

  int64_t StreamLength() {
    RedisClient client(redis_options_);
    absl::StatusOr<RedisReply> reply = client.Command({"XLEN", "ci-jobs"});
    return reply.ok() ? reply->integer : -1;
  }

  // The `job` field of every entry of the stream.
  std::vector<std::string> StreamJobs() {
    RedisClient client(redis_options_);
    absl::StatusOr<RedisReply> reply =
        client.Command({"XRANGE", "ci-jobs", "-", "+"});
    std::vector<std::string> jobs;
    if (!reply.ok()) return jobs;
    for (const RedisReply& entry : reply->elements) {
      const auto& kv = entry.elements[1].elements;
      for (size_t i = 0; i + 1 < kv.size(); i += 2) {
        if (kv[i].str == "job") jobs.push_back(kv[i + 1].str);
      }
    }
    return jobs;
  }

  std::string Status(const std::string& job_id, const std::string& field) {
    RedisClient client(redis_options_);
    absl::StatusOr<RedisReply> reply =
        client.Command({"HGET", QueueOptions().StatusKey(job_id), field});
    return reply.ok() ? reply->str : "";
  }

  std::string tool_;
  std::string dir_;
  std::unique_ptr<testing::RedisServer> redis_;
  RedisOptions redis_options_;
  std::unique_ptr<Subprocess> receiver_;
  int port_ = 0;
  std::unique_ptr<HttpTransport> http_ = MakeCurlTransport();
};

TEST_F(WebhookTest, AnswersEachKindOfRequestAndEnqueuesOnlySignedPushes) {
  StartReceiver({"--allowed-hosts", "gitea.example.com", "--steps",
                 "check,test", "--max-body-bytes", "65536"});
  const std::string commit = "bffeb74224043ba2feb48d137756c8a9331c449a";
  const std::string body = absl::StrCat(
      R"({"ref":"refs/heads/main","after":")", commit,
      R"(","repository":{"clone_url":"https://gitea.example.com/acme/app.git"}})");

  EXPECT_EQ(Send({.url = Url("/healthz")}).body, "ok\n");
  EXPECT_EQ(Send({.url = Url("/nowhere")}).status, 404);
  EXPECT_EQ(Send({.url = Url("/webhook")}).status, 405);
  EXPECT_EQ(Send({.method = "POST", .url = Url("/webhook"),
                  .headers = {{"Content-Type", "application/x-www-form-urlencoded"}},
                  .body = "payload=x"})
                .status,
            415);
  const std::string big(70000, ' ');
  EXPECT_EQ(Deliver(big, "too-big", Sign(big)).status, 413);
  // Unsigned, wrongly signed: refused, nothing enqueued.
  EXPECT_EQ(Deliver(body, "d-unsigned", "").status, 401);
  EXPECT_EQ(Deliver(body, "d-forged", Sign(body + " ")).status, 401);
  EXPECT_EQ(StreamLength(), 0);
  // Another host's repository.
  const std::string other = absl::StrReplaceAll(
      body, {{"gitea.example.com", "evil.example"}});
  EXPECT_EQ(Deliver(other, "d-other", Sign(other)).status, 403);

  // The push, and the forge's retry of the same delivery.
  HttpResponse first = Deliver(body, "d-1", Sign(body));
  EXPECT_EQ(first.status, 202);
  EXPECT_THAT(first.body, HasSubstr(R"("outcome":"enqueued")"));
  HttpResponse again = Deliver(body, "d-1", Sign(body));
  EXPECT_EQ(again.status, 202);
  EXPECT_THAT(again.body, HasSubstr(R"("outcome":"duplicate")"));
  EXPECT_EQ(StreamLength(), 1);
  const std::string job_id =
      PushJobId("https://gitea.example.com/acme/app.git", "main", commit);
  EXPECT_EQ(Status(job_id, "status"), "queued");
  EXPECT_THAT(StreamJobs(), ::testing::ElementsAre(::testing::AllOf(
                                HasSubstr(job_id),
                                HasSubstr(R"("steps":["check","test"])"))));

  const std::string metrics = Send({.url = Url("/metrics")}).body;
  EXPECT_THAT(metrics, HasSubstr(R"(ciagent_webhook_deliveries_total{outcome="enqueued"} 1)"));
  EXPECT_THAT(metrics, HasSubstr(R"(ciagent_webhook_deliveries_total{outcome="duplicate"} 1)"));
  EXPECT_THAT(metrics, HasSubstr(R"(ciagent_webhook_deliveries_total{outcome="unauthorized"} 2)"));
  EXPECT_THAT(metrics, HasSubstr(R"(ciagent_webhook_deliveries_total{outcome="forbidden"} 1)"));

  // Redis gone: 503, so the forge delivers again later.
  redis_.reset();
  const std::string next = absl::StrReplaceAll(body, {{commit, std::string(40, 'e')}});
  EXPECT_EQ(Deliver(next, "d-2", Sign(next)).status, 503);

  // Every refusal was logged with its delivery id and reason; the secret
  // never.
  const std::string log = testing::ReadFileOrEmpty(dir_ + "/receiver.log");
  EXPECT_THAT(log, HasSubstr(R"("delivery":"d-forged","outcome":"unauthorized")"));
  EXPECT_THAT(log, ::testing::Not(HasSubstr(kSecret)));
  // SIGTERM ends it cleanly.
  receiver_->Signal(SIGTERM);
  EXPECT_THAT(receiver_->Wait(absl::Seconds(10)), IsOkAndHolds(0));
}

TEST_F(WebhookTest, AGitPushBecomesOneJobThatBuildsAndPushesItsImage) {
  CIAGENT_REQUIRE_CARGO(path);
  CIAGENT_REQUIRE_BUILDAH(buildah_path);
  CIAGENT_START_GIT_SERVER(git, {.username = "ci", .password = kGitToken});
  CIAGENT_START_REGISTRY(
      registry, {.auth = testing::RegistryServerOptions::Auth::kBasic,
                 .password = kRegistryToken});
  StartReceiver({"--allowed-hosts", absl::StrCat("127.0.0.1:", git->port()),
                 "--branches", "main,release/*"});
  ASSERT_OK_AND_ASSIGN(std::string bare, git->CreateBareRepo("acme/app"));
  const std::string clone_url = git->RepoUrl("acme/app");
  {
    std::ofstream hook(bare + "/hooks/post-receive");
    hook << absl::StrReplaceAll(
        kHook, {{"SECRET_FILE", "\"" + dir_ + "/secret\""},
                {"CLONE_URL", "\"" + clone_url + "\""},
                {"SAVED", "\"" + dir_ + "/delivery.json\""},
                {"RECEIVER", "\"" + Url("/webhook") + "\""}});
  }
  ASSERT_EQ(chmod((bare + "/hooks/post-receive").c_str(), 0755), 0);

  // A developer's push: the fixture with a Dockerfile, committed and pushed
  // over HTTP with the token (from an askpass script, never argv).
  const std::string work = dir_ + "/work";
  ASSERT_OK_AND_ASSIGN(std::string src,
                       testing::CopyFixture("with_dockerfile", dir_));
  std::filesystem::rename(src, work);
  ASSERT_OK(testing::WriteText(dir_ + "/askpass",
                               absl::StrCat("#!/bin/sh\necho ", kGitToken, "\n"),
                               0700));
  const std::map<std::string, std::string> askpass = {
      {"GIT_ASKPASS", dir_ + "/askpass"}};
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{
           {"-C", work, "init", "-q", "-b", "main"},
           {"-C", work, "add", "."},
           {"-C", work, "commit", "-q", "-m", "a change"},
           {"-C", work, "push", "-q",
            absl::StrReplaceAll(clone_url, {{"http://", "http://ci@"}}),
            "main"}}) {
    ASSERT_OK_AND_ASSIGN(testing::GitResult result,
                         testing::RunGit(args, askpass));
    ASSERT_TRUE(result.ok()) << result.stderr_text;
    if (args[2] == "push") {
      EXPECT_THAT(result.stderr_text,
                  HasSubstr("remote: webhook: 202 {\"outcome\":\"enqueued\""));
    }
  }
  ASSERT_OK_AND_ASSIGN(testing::GitResult head,
                       testing::RunGit({"-C", work, "rev-parse", "HEAD"}));
  const std::string commit(absl::StripAsciiWhitespace(head.stdout_text));
  const std::string job_id = PushJobId(clone_url, "main", commit);
  EXPECT_EQ(Status(job_id, "status"), "queued");

  // The forge delivers the same event again: nothing more is enqueued.
  simdjson::dom::parser parser;
  simdjson::dom::element saved;
  ASSERT_EQ(parser.load(dir_ + "/delivery.json").get(saved), simdjson::SUCCESS);
  const auto text = [](simdjson::dom::element value) {
    std::string_view view;
    return value.get(view) == simdjson::SUCCESS ? std::string(view) : "";
  };
  HttpResponse again =
      Deliver(text(saved["body"]), text(saved["headers"]["X-Gitea-Delivery"]),
              text(saved["headers"]["X-Gitea-Signature"]));
  EXPECT_THAT(again.body, HasSubstr(R"("outcome":"duplicate")"));
  EXPECT_EQ(StreamLength(), 1);

  // An agent pod takes it to the end.
  ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<Subprocess> agent,
      testing::StartAgentPod({.name = "agent",
                              .dir = dir_,
                              .redis_url = redis_->url(),
                              .path = path,
                              .env = {{"GIT_USERNAME", "ci"},
                                      {"GIT_TOKEN", kGitToken},
                                      {"CI_IMAGE_BUILDER", "buildah"},
                                      {"REGISTRY_URL", registry->url()},
                                      {"REGISTRY_USERNAME", "ci"},
                                      {"REGISTRY_TOKEN", kRegistryToken}}}));
  EXPECT_THAT(agent->Wait(absl::Minutes(5)), IsOkAndHolds(0))
      << testing::ReadFileOrEmpty(dir_ + "/agent.log");
  EXPECT_EQ(Status(job_id, "status"), "success") << Status(job_id, "reason");
  EXPECT_EQ(Status(job_id, "tests_passed"), "1");
  const std::string image = Status(job_id, "image");
  EXPECT_EQ(image, absl::StrCat(registry->host(), "/acme/app:", commit));
  EXPECT_THAT(InspectDigest(image, {.username = "ci", .password = kRegistryToken}),
              IsOkAndHolds(Status(job_id, "image_digest")));
}

}  // namespace
}  // namespace ciagent
