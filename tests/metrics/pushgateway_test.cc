// PushMetrics against a real Prometheus Pushgateway, and ci-build pushing a
// finished job's metrics to it.
#include "ciagent/metrics/pushgateway.h"

#include <sys/stat.h>

#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "ciagent/base/process_runner.h"
#include "ciagent/net/http.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/redis_server.h"
#include "testing/status_matchers.h"
#include "testing/subprocess.h"

namespace ciagent {
namespace {

using ::ciagent::testing::StatusIs;
using ::testing::HasSubstr;

constexpr char kText[] =
    "# HELP ciagent_job_duration_seconds Duration of the job's build "
    "pipeline.\n"
    "# TYPE ciagent_job_duration_seconds gauge\n"
    "ciagent_job_duration_seconds{job_id=\"j-1\"} 12.5\n";

class PushgatewayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* path = std::getenv("PATH");
    if (FindExecutable("prometheus-pushgateway", path ? path : "").empty()) {
      if (testing::RunningUnderCi()) {
        FAIL() << "prometheus-pushgateway is not installed";
      }
      GTEST_SKIP() << "prometheus-pushgateway is not installed "
                      "(a failure under CI=true)";
    }
    ASSERT_OK_AND_ASSIGN(dir_, testing::MakeTempDir("pushgateway"));
    ASSERT_OK_AND_ASSIGN(
        port_, testing::LaunchOnFreePort([&](int port) {
          auto started = testing::Subprocess::Start(
              {"prometheus-pushgateway",
               absl::StrCat("--web.listen-address=127.0.0.1:", port)},
              {.stdout_path = dir_ + "/out", .stderr_path = dir_ + "/err"});
          if (!started.ok()) return started.status();
          gateway_ = *std::move(started);
          for (int i = 0; i < 100; ++i) {
            if (!gateway_->running()) break;
            auto ready = http_->Send(
                {.url = absl::StrCat("http://127.0.0.1:", port, "/-/ready")});
            if (ready.ok() && ready->status == 200) return absl::OkStatus();
            absl::SleepFor(absl::Milliseconds(100));
          }
          gateway_.reset();
          return absl::UnavailableError("pushgateway did not start");
        }));
  }
  void TearDown() override {
    gateway_.reset();
    if (!dir_.empty()) testing::RemoveTree(dir_);
  }

  std::string url() const { return absl::StrCat("http://127.0.0.1:", port_); }

  // What Prometheus would scrape from the gateway.
  std::string Scrape() {
    auto response = http_->Send({.url = url() + "/metrics"});
    return response.ok() ? response->body : "";
  }

  std::unique_ptr<HttpTransport> http_ = MakeCurlTransport();
  std::unique_ptr<testing::Subprocess> gateway_;
  std::string dir_;
  int port_ = 0;
};

TEST_F(PushgatewayTest, PushedMetricsAreScrapedWithTheirGroup) {
  ASSERT_OK(PushMetrics(
      {.url = url(), .grouping = {{"instance", "agent-7f9c"}}}, kText));
  EXPECT_THAT(Scrape(),
              HasSubstr("ciagent_job_duration_seconds{instance=\"agent-7f9c\","
                        "job=\"ciagent\",job_id=\"j-1\"} 12.5"));
}

TEST_F(PushgatewayTest, GroupingValuesWithSlashesAreEncoded) {
  ASSERT_OK(PushMetrics(
      {.url = url() + "/", .grouping = {{"instance", "ci/agent 1"}}}, kText));
  EXPECT_THAT(Scrape(), HasSubstr("instance=\"ci/agent 1\""));
}

TEST_F(PushgatewayTest, PushReplacesTheGroupsEarlierMetrics) {
  ASSERT_OK(
      PushMetrics({.url = url(), .grouping = {{"instance", "a"}}}, kText));
  ASSERT_OK(PushMetrics({.url = url(), .grouping = {{"instance", "a"}}},
                        "ciagent_clippy_warnings 3\n"));
  const std::string scraped = Scrape();
  EXPECT_THAT(scraped, HasSubstr("ciagent_clippy_warnings{instance=\"a\""));
  EXPECT_THAT(scraped,
              ::testing::Not(HasSubstr("ciagent_job_duration_seconds")));
}

TEST_F(PushgatewayTest, MalformedTextIsRejectedAsInvalid) {
  EXPECT_THAT(PushMetrics({.url = url()}, "not { prometheus text\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("400")));
}

TEST_F(PushgatewayTest, UnreachableGatewayIsUnavailable) {
  const std::string gone = url();
  gateway_.reset();
  EXPECT_THAT(PushMetrics({.url = gone, .attempts = 2}, kText),
              StatusIs(absl::StatusCode::kUnavailable));
}

TEST_F(PushgatewayTest, CiBuildPushesAFinishedRunsMetrics) {
  ASSERT_OK_AND_ASSIGN(std::string ci_build,
                       testing::PathFromEnv("CIAGENT_CI_BUILD"));
  // A stand-in crate whose `cargo` succeeds at once: what is pushed does
  // not depend on what cargo does.
  ASSERT_EQ(mkdir((dir_ + "/src").c_str(), 0755), 0);
  ASSERT_EQ(mkdir((dir_ + "/bin").c_str(), 0755), 0);
  std::ofstream(dir_ + "/src/Cargo.toml") << "[package]\n";
  std::ofstream(dir_ + "/bin/cargo") << "#!/bin/sh\nexit 0\n";
  ASSERT_EQ(chmod((dir_ + "/bin/cargo").c_str(), 0755), 0);
  auto run = testing::Subprocess::Start(
      {ci_build, "--local", dir_ + "/src", "--steps", "check",
       "--metrics-pushgateway", url()},
      {.env = {{"POD_NAME", "agent-e2"}, {"PATH", dir_ + "/bin:/usr/bin:/bin"}},
       .stdout_path = dir_ + "/ci-build.out",
       .stderr_path = dir_ + "/ci-build.err"});
  ASSERT_OK(run.status());
  EXPECT_THAT((*run)->Wait(absl::Seconds(60)),
              ::ciagent::testing::IsOkAndHolds(0))
      << testing::ReadFileOrEmpty(dir_ + "/ci-build.err");
  const std::string scraped = Scrape();
  EXPECT_THAT(scraped, HasSubstr("ciagent_job_result{instance=\"agent-e2\""))
      << testing::ReadFileOrEmpty(dir_ + "/ci-build.err");
}

}  // namespace
}  // namespace ciagent
