// What ci-queue prints: ages, tables, a job as people read it, JSON.
#include "format.h"

#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "ciagent/job/job.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ciagent {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

const absl::Time kNow = absl::FromUnixSeconds(1795757890);

std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

TEST(FormatTest, AgesAreCompactWithTheTwoLargestUnits) {
  EXPECT_EQ(FormatAge(absl::Milliseconds(400)), "0s");
  EXPECT_EQ(FormatAge(absl::Seconds(45)), "45s");
  EXPECT_EQ(FormatAge(absl::Seconds(185)), "3m05s");
  EXPECT_EQ(FormatAge(absl::Minutes(124)), "2h04m");
  EXPECT_EQ(FormatAge(absl::Hours(76)), "3d04h");
  EXPECT_EQ(FormatAge(-absl::Seconds(5)), "0s");
}

TEST(FormatTest, ElapsedTimesKeepMillisecondsUnderASecond) {
  EXPECT_EQ(FormatElapsed(absl::Milliseconds(850)), "850ms");
  EXPECT_EQ(FormatElapsed(absl::Milliseconds(3240)), "3.2s");
  EXPECT_EQ(FormatElapsed(absl::Seconds(62)), "1m02s");
}

TEST(FormatTest, RelativeTimesSayAgoOrInTheFuture) {
  EXPECT_EQ(FormatAgo(kNow - absl::Seconds(185), kNow), "3m05s ago");
  EXPECT_EQ(FormatAgo(kNow - absl::Milliseconds(300), kNow), "just now");
  EXPECT_EQ(FormatAgo(kNow + absl::Seconds(4), kNow), "in 4s");
}

TEST(FormatTest, TableColumnsAlignByCharactersNotBytesOrColourCodes) {
  TextTable table({"NAME", "STATUS", "NOTE"});
  table.AddRow({"café", "ok", "x"},
               {"café", PaintStatus("ok", {.color = true}), "x"});
  table.AddRow({"b", "failed", ""});
  EXPECT_THAT(Lines(table.Render({})),
              ElementsAre("NAME  STATUS  NOTE", "café  ok      x", "b     failed"));
  const std::string colored = table.Render({.color = true});
  EXPECT_THAT(colored, HasSubstr("\033[32mok\033[0m      x"));
}

TEST(FormatTest, StatusesAreColouredOnlyOnATerminal) {
  EXPECT_EQ(PaintStatus("failed", {}), "failed");
  EXPECT_EQ(PaintStatus("failed", {.color = true}), "\033[31mfailed\033[0m");
  EXPECT_EQ(PaintStatus("queued", {.color = true}), "queued");
}

JobRecord FinishedJob() {
  return JobRecord{
      .job_id = "push-1",
      .fields = {
          {"status", "failed"},
          {"reason", "1 test failed"},
          {"repo", "https://git.example.com/acme/app.git"},
          {"branch", "main"},
          {"commit", "4f2c9a17d3be0e6c58a2f1b7c90d34e5a6b7c8d9"},
          {"attempt", "1"},
          {"consumer", "agent-7f9c"},
          {"enqueued_at", "2026-11-27T05:35:00.000Z"},
          {"finished_at", "2026-11-27T05:37:10.000Z"},
          {"duration_ms", "62000"},
          {"tests_passed", "5"},
          {"tests_failed", "1"},
          {"tests_ignored", "0"},
          {"failed_tests", R"(["math::subtracts"])"},
          {"steps",
           R"([{"name":"check","status":"ok","exit_code":0,"duration_ms":1200,"reason":"","warnings":0},)"
           R"({"name":"test","status":"failed","exit_code":101,"duration_ms":3400,"reason":"exit code 101","warnings":0},)"
           R"({"name":"image","status":"skipped","exit_code":-1,"duration_ms":0,"reason":"needs test, which failed","warnings":0}])"},
          {"cache",
           R"({"key":"ab","match":"exact","uncached_reason":"","units":9,"fresh_units":9,"dependency_units":8,"fresh_dependency_units":8,"dependency_hit_rate":1.0})"},
          {"image", ""},
          {"earlier_reasons",
           R"([{"reason":"delivered 4 times, more than max_deliveries=3","at":"2026-11-26T10:00:00.000Z","dead_letter_id":"1795-0"}])"},
      }};
}

TEST(FormatTest, ShowReadsTheStatusHashAsPeopleDo) {
  const std::vector<std::string> lines =
      Lines(JobText(FinishedJob(), kNow, {}));
  EXPECT_EQ(lines[0], "job push-1  failed  1 test failed");
  EXPECT_THAT(lines, testing::Contains("  attempt   1 on agent-7f9c"));
  EXPECT_THAT(lines, testing::Contains(
                         "  finished  2026-11-27T05:37:10.000Z (1m00s ago)"));
  EXPECT_THAT(lines, testing::Contains("  took      1m02s"));
  EXPECT_THAT(lines, testing::Contains("  tests     5 passed, 1 failed, 0 ignored"));
  EXPECT_THAT(lines, testing::Contains("            failed: math::subtracts"));
  EXPECT_THAT(lines, testing::Contains(
                         "  cache     exact match, 8/8 dependency units fresh"));
  EXPECT_THAT(lines, testing::Contains(
                         "  earlier   2026-11-26T10:00:00.000Z  delivered 4 "
                         "times, more than max_deliveries=3 (dead letter 1795-0)"));
  EXPECT_THAT(lines, Not(testing::Contains(::testing::StartsWith("  image    "))))
      << "an empty field is left out";
  EXPECT_THAT(lines, testing::Contains("  STEP   STATUS   TIME  EXIT  REASON"));
  EXPECT_THAT(lines, testing::Contains("  check  ok       1.2s  0"));
  EXPECT_THAT(lines, testing::Contains("  test   failed   3.4s  101   exit code 101"));
  EXPECT_THAT(lines, testing::Contains(
                         "  image  skipped  0ms   -     needs test, which failed"));
}

TEST(FormatTest, ShowAsJsonEmbedsTheJsonFieldsAndKeepsOthersAsStrings) {
  JobRecord job = FinishedJob();
  job.fields.emplace_back("artifacts", "[not json");
  const std::string json = JobJson(job);
  EXPECT_THAT(json, HasSubstr(R"("job_id":"push-1","status":"failed")"));
  EXPECT_THAT(json, HasSubstr(R"("tests_passed":"5")"));
  EXPECT_THAT(json, HasSubstr(R"("failed_tests":["math::subtracts"])"));
  EXPECT_THAT(json, HasSubstr(R"("steps":[{"name":"check")"));
  EXPECT_THAT(json, HasSubstr(R"("artifacts":"[not json")"));
}

TEST(FormatTest, ListShowsOneAlignedRowPerJobWithAShortenedReason) {
  JobRecord running{.job_id = "push-2",
                    .fields = {{"status", "running"},
                               {"started_at", "2026-11-27T05:36:10.000Z"},
                               {"enqueued_at", "2026-11-27T05:36:00.000Z"},
                               {"attempt", "2"},
                               {"branch", "dev"},
                               {"commit", std::string(40, 'b')}}};
  JobRecord failed = FinishedJob();
  failed.fields[1].second = std::string(100, 'r');
  const std::vector<std::string> lines =
      Lines(JobListText({running, failed}, kNow, {}));
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0],
            "JOB     STATUS   ENQUEUED   TIME    ATTEMPT  BRANCH  COMMIT        REASON");
  EXPECT_EQ(lines[1],
            "push-2  running  2m10s ago  2m00s…  2        dev     bbbbbbbbbbbb");
  EXPECT_THAT(lines[2], HasSubstr("push-1  failed   3m10s ago  1m02s   1        main    4f2c9a17d3be"));
  EXPECT_THAT(lines[2], HasSubstr(std::string(59, 'r') + "…"));
  EXPECT_EQ(JobListText({}, kNow, {}), "no recent jobs\n");
}

TEST(FormatTest, StatsSayWhenLagIsUnknownAndJsonSaysNull) {
  QueueStats stats{.group_exists = true, .length = 4, .pending = 1,
                   .oldest_pending_age = absl::Seconds(65),
                   .consumers = {{"agent-a", 1, absl::Milliseconds(300)}},
                   .dead_letters = 2, .recent_jobs = 4};
  const std::string text = StatsText(stats, QueueOptions{}, {});
  EXPECT_THAT(text, HasSubstr("  waiting       unknown"));
  EXPECT_THAT(text, HasSubstr("  pending       1, oldest 1m05s (running or requeued)"));
  EXPECT_THAT(text, HasSubstr("  agent-a  1        0s"));
  const std::string json = StatsJson(stats, QueueOptions{});
  EXPECT_THAT(json, HasSubstr(R"("lag":null,"pending":1,"oldest_waiting_age_ms":null,"oldest_pending_age_ms":65000)"));
  EXPECT_THAT(json, HasSubstr(R"("consumers":[{"name":"agent-a","pending":1,"idle_ms":300}])"));
}

TEST(FormatTest, LogLinesMarkEachNewAttempt) {
  const LogEntry first{.seq = 1, .attempt = 1, .step = "fetch",
                       .stream = "agent", .line = "fetching"};
  const LogEntry retried{.seq = 1, .attempt = 2, .step = "check",
                         .stream = "stderr", .line = "Compiling app"};
  EXPECT_EQ(LogLineText(first, 0, {}), "fetch  fetching\n");
  EXPECT_EQ(LogLineText(retried, 1, {}),
            "--- attempt 2 ---\ncheck  Compiling app\n");
  EXPECT_EQ(LogLineText(retried, 2, {}), "check  Compiling app\n");
  EXPECT_EQ(LogLineJson(first),
            R"({"id":"","seq":1,"attempt":1,"step":"fetch","stream":"agent","line":"fetching"})");
}

TEST(FormatTest, RedriveResultsSayWhatHappenedToEachDeadLetter) {
  const std::vector<std::string> lines = Lines(RedriveText(
      {{.dead_letter_id = "1-0", .job_id = "a",
        .outcome = RedriveOutcome::kRedriven, .stream_id = "9-0"},
       {.dead_letter_id = "2-0", .outcome = RedriveOutcome::kRefused,
        .reason = "malformed entry: no `job` field"}},
      {}));
  EXPECT_THAT(lines, ElementsAre("ID   OUTCOME   JOB  DETAIL",
                                 "1-0  redriven  a    new entry 9-0",
                                 "2-0  refused        malformed entry: no `job` field"));
}

TEST(FormatTest, GeneratedJobIdsAreValidJobIdsNamedAfterTheRepository) {
  const absl::Time now = absl::FromUnixSeconds(1795757890);
  EXPECT_EQ(MakeJobId("https://git.example.com/acme/hello-ci.git", now, 0x3fa2),
            "hello-ci-20261127-053810-3fa2");
  EXPECT_EQ(MakeJobId("https://h/acme/we!rd name/", now, 1),
            "we-rd-name-20261127-053810-0001");
  EXPECT_EQ(MakeJobId("", now, 2), "job-20261127-053810-0002");
  Job job{.job_id = MakeJobId("https://h/a/%2e%2e.git", now, 3),
          .repo = "https://h/a.git", .branch = "main",
          .commit = std::string(40, 'a')};
  EXPECT_TRUE(ParseJob(JobToJson(job)).ok()) << job.job_id;
}

}  // namespace
}  // namespace ciagent
