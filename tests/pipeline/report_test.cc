// Specification of the reports of a pipeline run: the --result JSON file,
// the status-hash fields, the Prometheus metrics and the local-mode summary.
// JSON outputs are checked by parsing them with simdjson.
#include "ciagent/pipeline/report.h"
#include "ciagent/pipeline/pipeline_config.h"

#include <simdjson.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ciagent {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Key;
using ::testing::Not;
using ::testing::Pair;

namespace dom = simdjson::dom;

constexpr char kSha[] =
    "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";

StepRecord Step(absl::string_view name, StepStatus status, int exit_code,
                absl::Duration duration, absl::string_view reason = "",
                int64_t warnings = 0) {
  StepRecord step;
  step.name = std::string(name);
  step.status = status;
  step.exit_code = exit_code;
  step.duration = duration;
  step.reason = std::string(reason);
  step.warnings = warnings;
  return step;
}

constexpr char kCacheKey[] =
    "9c1e2f4a0b7d3c6e5f8a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f506";

// A run whose tests failed: every part of the report has something to say.
PipelineResult FailedTestsRun() {
  PipelineResult result;
  result.status = JobStatus::kFailed;
  result.reason = "test failed: 2 tests failed";
  result.steps = {
      Step("check", StepStatus::kOk, 0, absl::Milliseconds(1200)),
      Step("build", StepStatus::kOk, 0, absl::Milliseconds(12300)),
      Step("test", StepStatus::kFailed, 101, absl::Milliseconds(3400),
           "cargo exited with code 101"),
      Step("clippy", StepStatus::kOk, 0, absl::Seconds(2), "", 3),
      Step("audit", StepStatus::kSkipped, -1, absl::ZeroDuration(),
           "cargo-audit and cargo-deny are not installed"),
  };
  result.tests.passed = 10;
  result.tests.failed = 2;
  result.tests.ignored = 1;
  result.tests.failing_names = {"math::subtracts", "net::fetches"};
  result.tests.complete = true;
  result.artifacts = {{.name = "app",
                       .path = "/src/target/release/app",
                       .size_bytes = 4096,
                       .sha256 = kSha}};
  result.clippy_warnings = 3;
  result.cache.key = kCacheKey;
  result.cache.match = "fallback";
  result.cache.units = 8;
  result.cache.fresh_units = 5;
  result.cache.dependency_units = 6;
  result.cache.fresh_dependency_units = 5;
  result.cache.dependency_hit_rate = 5.0 / 6.0;
  result.duration = absl::Milliseconds(83250);
  return result;
}

// Parses `json`, failing the test if it is not valid JSON. The returned
// element lives as long as `parser`.
dom::element Parse(dom::parser& parser, const std::string& json) {
  dom::element root;
  const simdjson::error_code error = parser.parse(json).get(root);
  EXPECT_EQ(error, simdjson::SUCCESS)
      << simdjson::error_message(error) << " in " << json;
  return root;
}

std::string String(dom::element value) {
  std::string_view text;
  EXPECT_EQ(value.get_string().get(text), simdjson::SUCCESS);
  return std::string(text);
}

int64_t Int(dom::element value) {
  int64_t n = -12345;
  EXPECT_EQ(value.get_int64().get(n), simdjson::SUCCESS);
  return n;
}

std::vector<std::string> Keys(dom::object object) {
  std::vector<std::string> keys;
  for (dom::key_value_pair field : object) {
    keys.emplace_back(field.key);
  }
  return keys;
}

std::vector<std::string> Strings(dom::element value) {
  std::vector<std::string> out;
  dom::array array;
  EXPECT_EQ(value.get_array().get(array), simdjson::SUCCESS);
  for (dom::element item : array) out.push_back(String(item));
  return out;
}

std::map<std::string, std::string> AsMap(
    const std::vector<std::pair<std::string, std::string>>& fields) {
  return std::map<std::string, std::string>(fields.begin(), fields.end());
}

// Test names a test binary may well print.
const std::vector<std::string> kAwkwardNames = {
    "quotes::\"quoted\"",     "back\\slash",
    "new\nline and\ttab",     std::string("nul\0byte", 8),
    "control\x01\x1b[31mred", "invalid\xff\xfeutf8",
    "truncated \xe2\x82",     "unicode::caf\xc3\xa9_\xe2\x9c\x93",
};

// ---------------------------------------------------------------------------
// ResultJson

TEST(ResultJsonTest, HoldsEveryPartOfTheResult) {
  dom::parser parser;
  const std::string json = ResultJson(FailedTestsRun());
  dom::object root;
  ASSERT_EQ(Parse(parser, json).get_object().get(root), simdjson::SUCCESS);
  EXPECT_THAT(
      Keys(root),
      ElementsAre("status", "reason", "steps", "tests", "failed_tests",
                  "flaky_tests", "quarantined_tests", "test_attempts",
                  "artifacts", "clippy_warnings", "cache", "image",
                  "config", "duration_ms"));
  EXPECT_EQ(String(root["status"]), "failed");
  EXPECT_EQ(String(root["reason"]), "test failed: 2 tests failed");

  dom::array steps;
  ASSERT_EQ(root["steps"].get_array().get(steps), simdjson::SUCCESS);
  ASSERT_EQ(steps.size(), 5u);
  EXPECT_THAT(Keys(steps.at(2).get_object()),
              ElementsAre("name", "status", "exit_code", "duration_ms",
                          "reason", "warnings", "allow_failure"));
  EXPECT_EQ(String(steps.at(2)["name"]), "test");
  EXPECT_EQ(String(steps.at(2)["status"]), "failed");
  EXPECT_EQ(Int(steps.at(2)["exit_code"]), 101);
  EXPECT_EQ(Int(steps.at(2)["duration_ms"]), 3400);
  EXPECT_EQ(String(steps.at(2)["reason"]), "cargo exited with code 101");
  EXPECT_EQ(Int(steps.at(3)["warnings"]), 3);
  EXPECT_EQ(String(steps.at(4)["status"]), "skipped");
  EXPECT_EQ(Int(steps.at(4)["exit_code"]), -1);

  EXPECT_EQ(Int(root["tests"]["passed"]), 10);
  EXPECT_EQ(Int(root["tests"]["failed"]), 2);
  EXPECT_EQ(Int(root["tests"]["ignored"]), 1);
  EXPECT_THAT(Strings(root["failed_tests"]),
              ElementsAre("math::subtracts", "net::fetches"));

  dom::array artifacts;
  ASSERT_EQ(root["artifacts"].get_array().get(artifacts), simdjson::SUCCESS);
  ASSERT_EQ(artifacts.size(), 1u);
  EXPECT_THAT(Keys(artifacts.at(0).get_object()),
              ElementsAre("name", "path", "size_bytes", "sha256"));
  EXPECT_EQ(String(artifacts.at(0)["path"]), "/src/target/release/app");
  EXPECT_EQ(Int(artifacts.at(0)["size_bytes"]), 4096);
  EXPECT_EQ(String(artifacts.at(0)["sha256"]), kSha);

  EXPECT_EQ(Int(root["clippy_warnings"]), 3);
  EXPECT_EQ(Int(root["duration_ms"]), 83250);

  dom::object cache;
  ASSERT_EQ(root["cache"].get_object().get(cache), simdjson::SUCCESS);
  EXPECT_THAT(Keys(cache),
              ElementsAre("key", "match", "uncached_reason", "units",
                          "fresh_units", "dependency_units",
                          "fresh_dependency_units", "dependency_hit_rate"));
  EXPECT_EQ(String(cache["key"]), kCacheKey);
  EXPECT_EQ(String(cache["match"]), "fallback");
  EXPECT_EQ(Int(cache["units"]), 8);
  EXPECT_EQ(Int(cache["fresh_units"]), 5);
  EXPECT_EQ(Int(cache["dependency_units"]), 6);
  EXPECT_EQ(Int(cache["fresh_dependency_units"]), 5);
  double rate = -1;
  ASSERT_EQ(cache["dependency_hit_rate"].get_double().get(rate),
            simdjson::SUCCESS);
  EXPECT_NEAR(rate, 5.0 / 6.0, 1e-3);
}

TEST(ResultJsonTest, ResultJsonIsValidForTestNamesWithQuotes) {
  PipelineResult result = FailedTestsRun();
  result.tests.failing_names = kAwkwardNames;
  result.reason = "reason with \"quotes\" and \x07 bell";
  result.steps[2].reason = "exit \xff\n";
  result.artifacts[0].name = "a\"pp";
  dom::parser parser;
  dom::element root = Parse(parser, ResultJson(result));
  const std::vector<std::string> names = Strings(root["failed_tests"]);
  ASSERT_EQ(names.size(), kAwkwardNames.size());
  // Valid UTF-8 comes back byte for byte; invalid bytes become U+FFFD.
  EXPECT_EQ(names[0], kAwkwardNames[0]);
  EXPECT_EQ(names[1], kAwkwardNames[1]);
  EXPECT_EQ(names[2], kAwkwardNames[2]);
  EXPECT_EQ(names[3], kAwkwardNames[3]);
  EXPECT_EQ(names[4], kAwkwardNames[4]);
  EXPECT_EQ(names[5], "invalid\xEF\xBF\xBD\xEF\xBF\xBDutf8");
  EXPECT_EQ(names[7], kAwkwardNames[7]);
  EXPECT_EQ(String(root["reason"]), result.reason);
  EXPECT_EQ(String(root["steps"].at(2)["reason"]), "exit \xEF\xBF\xBD\n");
  EXPECT_EQ(String(root["artifacts"].at(0)["name"]), "a\"pp");
}

TEST(ResultJsonTest, DescribesAnEmptyRun) {
  dom::parser parser;
  const std::string json = ResultJson(PipelineResult());
  EXPECT_EQ(json,
            R"({"status":"success","reason":"","steps":[],)"
            R"("tests":{"passed":0,"failed":0,"ignored":0,"flaky":0,)"
            R"("reruns":0},"failed_tests":[],"flaky_tests":[],)"
            R"("quarantined_tests":[],"test_attempts":[],)"
            R"("artifacts":[],"clippy_warnings":0,)"
            R"("cache":{"key":"","match":"none","uncached_reason":"",)"
            R"("units":0,"fresh_units":0,"dependency_units":0,)"
            R"("fresh_dependency_units":0,"dependency_hit_rate":0},)"
            R"("image":{},"config":)" + PipelineConfigJson(PipelineConfig{}) +
                R"(,"duration_ms":0})");
  Parse(parser, json);
}

TEST(ResultJsonTest, NamesEveryJobStatus) {
  dom::parser parser;
  for (const auto& [status, name] :
       std::vector<std::pair<JobStatus, std::string>>{
           {JobStatus::kSuccess, "success"},
           {JobStatus::kFailed, "failed"},
           {JobStatus::kTimeout, "timeout"},
           {JobStatus::kCancelled, "cancelled"},
           {JobStatus::kError, "error"}}) {
    PipelineResult result;
    result.status = status;
    EXPECT_EQ(String(Parse(parser, ResultJson(result))["status"]), name);
  }
}

// ---------------------------------------------------------------------------
// StatusFields

TEST(StatusFieldsTest, NamesEveryPipelineFieldInOrder) {
  EXPECT_THAT(
      StatusFields(FailedTestsRun()),
      ElementsAre(Key("tests_passed"), Key("tests_failed"),
                  Key("tests_ignored"), Key("failed_tests"),
                  Key("tests_flaky"), Key("flaky_tests"),
                  Key("quarantined_tests"), Key("test_attempts"),
                  Key("artifacts"),
                  Key("steps"), Key("clippy_warnings"),
                  Key("pipeline_duration_ms"), Key("cache"), Key("image"),
                  Key("image_digest"), Key("config")));
}

TEST(StatusFieldsTest, AllowedFailureShowsInEveryReport) {
  PipelineResult result;
  result.steps = {{.name = "check", .status = StepStatus::kOk, .exit_code = 0},
                  {.name = "clippy",
                   .status = StepStatus::kFailed,
                   .exit_code = 101,
                   .reason = "clippy exited with code 101",
                   .allow_failure = true}};
  result.config.clippy.allow_failure = true;
  result.config.source = "workspace.metadata.ciagent";
  const auto fields = AsMap(StatusFields(result));
  EXPECT_THAT(fields.at("steps"), HasSubstr(R"("name":"clippy","status":"failed")"));
  EXPECT_THAT(fields.at("steps"), HasSubstr(R"("allow_failure":true)"));
  EXPECT_THAT(fields.at("config"),
              HasSubstr(R"("clippy":{"args":[],"allow_failure":true)"));
  EXPECT_THAT(ResultJson(result),
              HasSubstr(R"("config":{"source":"workspace.metadata.ciagent")"));
  EXPECT_THAT(HumanSummary(result),
              HasSubstr("allowed to fail: clippy exited with code 101"));
  const std::string metrics = PrometheusText(result, "");
  EXPECT_THAT(metrics,
              HasSubstr("ciagent_step_allowed_failure{step=\"clippy\"} 1\n"));
  EXPECT_THAT(metrics, Not(HasSubstr("ciagent_job_failure")));
}

TEST(StatusFieldsTest, NamePushedImageAndItsDigest) {
  PipelineResult result;
  EXPECT_EQ(AsMap(StatusFields(result)).at("image"), "");
  EXPECT_EQ(AsMap(StatusFields(result)).at("image_digest"), "");
  EXPECT_THAT(ResultJson(result), HasSubstr(R"("image":{})"));
  result.image = {.reference = "reg.example/acme/app:1f2e",
                  .digest = absl::StrCat("sha256:", kSha),
                  .tags = {"1f2e", "main"},
                  .builder = "buildah",
                  .blobs_uploaded = 2,
                  .bytes_uploaded = 4096,
                  .build_duration = absl::Milliseconds(1500),
                  .push_duration = absl::Milliseconds(70)};
  const auto fields = AsMap(StatusFields(result));
  EXPECT_EQ(fields.at("image"), "reg.example/acme/app:1f2e");
  EXPECT_EQ(fields.at("image_digest"), absl::StrCat("sha256:", kSha));
  dom::parser parser;
  dom::element image = Parse(parser, ResultJson(result))["image"];
  EXPECT_EQ(String(image["digest"]), absl::StrCat("sha256:", kSha));
  EXPECT_EQ(String(image["tags"].at(1)), "main");
  EXPECT_EQ(Int(image["bytes_uploaded"]), 4096);
  EXPECT_EQ(Int(image["build_ms"]), 1500);
  EXPECT_THAT(HumanSummary(result),
              HasSubstr("Image: reg.example/acme/app:1f2e@sha256:"));
}

TEST(StatusFieldsTest, HoldsCountsAsIntegersAndListsAsJson) {
  const auto fields = AsMap(StatusFields(FailedTestsRun()));
  EXPECT_EQ(fields.at("tests_passed"), "10");
  EXPECT_EQ(fields.at("tests_failed"), "2");
  EXPECT_EQ(fields.at("tests_ignored"), "1");
  EXPECT_EQ(fields.at("failed_tests"), R"(["math::subtracts","net::fetches"])");
  EXPECT_EQ(fields.at("artifacts"),
            absl::StrCat(R"([{"name":"app","size_bytes":4096,"sha256":")", kSha,
                         R"("}])"));
  EXPECT_EQ(fields.at("clippy_warnings"), "3");
  EXPECT_EQ(fields.at("pipeline_duration_ms"), "83250");
  EXPECT_EQ(fields.at("cache"),
            absl::StrCat(R"({"key":")", kCacheKey,
                         R"(","match":"fallback","uncached_reason":"",)"
                         R"("units":8,"fresh_units":5,"dependency_units":6,)"
                         R"("fresh_dependency_units":5,)"
                         R"("dependency_hit_rate":0.8333})"));

  dom::parser parser;
  dom::array steps;
  ASSERT_EQ(Parse(parser, fields.at("steps")).get_array().get(steps),
            simdjson::SUCCESS);
  ASSERT_EQ(steps.size(), 5u);
  EXPECT_EQ(String(steps.at(0)["name"]), "check");
  EXPECT_EQ(Int(steps.at(1)["duration_ms"]), 12300);
}

TEST(StatusFieldsTest, DoNotCollideWithTheQueuesOwnFields) {
  // docs/redis-schema.md, "Status hash": written by JobQueue itself.
  const std::set<std::string> queue_fields = {
      "status",       "job_id",           "repo",
      "branch",       "commit",           "attempt",
      "consumer",     "stream_id",        "enqueued_at",
      "started_at",   "lease_renewed_at", "updated_at",
      "finished_at",  "duration_ms",      "reason",
      "requeued_at",  "dead_letter_id",   "cancel_requested",
      "cancel_reason"};
  for (const auto& [name, value] : StatusFields(FailedTestsRun())) {
    EXPECT_EQ(queue_fields.count(name), 0u) << name;
  }
}

TEST(StatusFieldsTest, ListAtMostTheFirst100FailingNames) {
  PipelineResult result;
  result.tests.failed = 150;
  for (int i = 0; i < 150; ++i) {
    result.tests.failing_names.push_back(absl::StrCat("t", i));
  }
  const auto fields = AsMap(StatusFields(result));
  dom::parser parser;
  const std::vector<std::string> names =
      Strings(Parse(parser, fields.at("failed_tests")));
  ASSERT_EQ(names.size(), 100u);
  EXPECT_EQ(names.front(), "t0");
  EXPECT_EQ(names.back(), "t99");
  EXPECT_EQ(fields.at("tests_failed"), "150");
}

TEST(StatusFieldsTest, JsonFieldsAreValidForAwkwardNames) {
  PipelineResult result = FailedTestsRun();
  result.tests.failing_names = kAwkwardNames;
  result.artifacts[0].name = "bad\xff\"name";
  result.steps[0].reason = "\x1b[0m\r\n";
  const auto fields = AsMap(StatusFields(result));
  dom::parser parser;
  EXPECT_EQ(Strings(Parse(parser, fields.at("failed_tests"))).size(),
            kAwkwardNames.size());
  dom::parser artifacts_parser;
  EXPECT_EQ(
      String(Parse(artifacts_parser, fields.at("artifacts")).at(0)["name"]),
      "bad\xEF\xBF\xBD\"name");
  dom::parser steps_parser;
  EXPECT_EQ(String(Parse(steps_parser, fields.at("steps")).at(0)["reason"]),
            "\x1b[0m\r\n");
}

// ---------------------------------------------------------------------------
// PrometheusText

// Checks `text` against the text exposition format 0.0.4 as far as this
// writer uses it: every family announced by HELP then TYPE before its
// samples, samples of a family together, label values properly escaped,
// values numbers, the text ending with a newline. Fills `samples` with
// "name{labels}" => value, the labels unescaped and in order.
void CheckExposition(const std::string& text,
                     std::map<std::string, double>* samples) {
  EXPECT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  std::set<std::string> families_done;
  std::string family, help_for;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (line.empty()) continue;
    if (absl::ConsumePrefix(&line, "# HELP ")) {
      help_for = std::string(line.substr(0, line.find(' ')));
      EXPECT_EQ(families_done.count(help_for), 0u) << "second HELP " << line;
      continue;
    }
    if (absl::ConsumePrefix(&line, "# TYPE ")) {
      EXPECT_EQ(line, absl::StrCat(help_for, " gauge"));
      if (!family.empty()) families_done.insert(family);
      family = help_for;
      continue;
    }
    EXPECT_NE(line.front(), '#') << line;
    const size_t name_end = line.find_first_of("{ ");
    ASSERT_NE(name_end, absl::string_view::npos) << line;
    const std::string name(line.substr(0, name_end));
    EXPECT_EQ(name, family) << "sample outside its family: " << line;
    std::string key = name;
    size_t i = name_end;
    if (line[i] == '{') {
      key.push_back('{');
      ++i;
      while (i < line.size() && line[i] != '}') {
        const size_t eq = line.find("=\"", i);
        ASSERT_NE(eq, absl::string_view::npos) << line;
        absl::StrAppend(&key, line.substr(i, eq - i), "=");
        i = eq + 2;
        while (true) {
          ASSERT_LT(i, line.size()) << "unterminated label value: " << line;
          const char c = line[i++];
          if (c == '"') break;
          if (c == '\\') {
            ASSERT_LT(i, line.size());
            const char e = line[i++];
            ASSERT_TRUE(e == '\\' || e == '"' || e == 'n')
                << "bad escape in " << line;
            key.push_back(e == 'n' ? '\n' : e);
          } else {
            key.push_back(c);
          }
        }
        if (line[i] == ',') {
          key.push_back(',');
          ++i;
        }
      }
      ASSERT_LT(i, line.size()) << line;
      key.push_back('}');
      ++i;
    }
    ASSERT_EQ(line[i], ' ') << line;
    double value;
    EXPECT_TRUE(absl::SimpleAtod(line.substr(i + 1), &value)) << line;
    EXPECT_TRUE(samples->emplace(key, value).second) << "duplicate " << key;
  }
}

std::map<std::string, double> ParseExposition(const std::string& text) {
  std::map<std::string, double> samples;
  CheckExposition(text, &samples);
  return samples;
}

TEST(PrometheusTextTest, WritesEveryFamilyWithHelpAndType) {
  const std::string text = PrometheusText(FailedTestsRun(), "push-1234");
  EXPECT_EQ(
      text,
      "# HELP ciagent_job_duration_seconds Duration of the job's build "
      "pipeline.\n"
      "# TYPE ciagent_job_duration_seconds gauge\n"
      "ciagent_job_duration_seconds{job_id=\"push-1234\"} 83.250\n"
      "# HELP ciagent_job_result 1 for the job's final status, 0 for the "
      "other statuses.\n"
      "# TYPE ciagent_job_result gauge\n"
      "ciagent_job_result{job_id=\"push-1234\",status=\"success\"} 0\n"
      "ciagent_job_result{job_id=\"push-1234\",status=\"failed\"} 1\n"
      "ciagent_job_result{job_id=\"push-1234\",status=\"timeout\"} 0\n"
      "ciagent_job_result{job_id=\"push-1234\",status=\"cancelled\"} 0\n"
      "ciagent_job_result{job_id=\"push-1234\",status=\"error\"} 0\n"
      "# HELP ciagent_job_failure 1 for what ended an unsuccessful job: the "
      "first failed step, or timeout, cancelled, error.\n"
      "# TYPE ciagent_job_failure gauge\n"
      "ciagent_job_failure{job_id=\"push-1234\",reason=\"test\"} 1\n"
      "# HELP ciagent_step_duration_seconds Duration of each pipeline step, "
      "with the step's status.\n"
      "# TYPE ciagent_step_duration_seconds gauge\n"
      "ciagent_step_duration_seconds{job_id=\"push-1234\",step=\"check\","
      "status=\"ok\"} 1.200\n"
      "ciagent_step_duration_seconds{job_id=\"push-1234\",step=\"build\","
      "status=\"ok\"} 12.300\n"
      "ciagent_step_duration_seconds{job_id=\"push-1234\",step=\"test\","
      "status=\"failed\"} 3.400\n"
      "ciagent_step_duration_seconds{job_id=\"push-1234\",step=\"clippy\","
      "status=\"ok\"} 2.000\n"
      "ciagent_step_duration_seconds{job_id=\"push-1234\",step=\"audit\","
      "status=\"skipped\"} 0.000\n"
      "# HELP ciagent_tests Tests of the job, by outcome.\n"
      "# TYPE ciagent_tests gauge\n"
      "ciagent_tests{job_id=\"push-1234\",outcome=\"passed\"} 10\n"
      "ciagent_tests{job_id=\"push-1234\",outcome=\"failed\"} 2\n"
      "ciagent_tests{job_id=\"push-1234\",outcome=\"ignored\"} 1\n"
      "ciagent_tests{job_id=\"push-1234\",outcome=\"flaky\"} 0\n"
      "# HELP ciagent_tests_quarantined Failed or flaky tests of the job "
      "that were quarantined.\n"
      "# TYPE ciagent_tests_quarantined gauge\n"
      "ciagent_tests_quarantined{job_id=\"push-1234\"} 0\n"
      "# HELP ciagent_test_reruns Reruns of failed tests (retries).\n"
      "# TYPE ciagent_test_reruns gauge\n"
      "ciagent_test_reruns{job_id=\"push-1234\"} 0\n"
      "# HELP ciagent_clippy_warnings Warnings reported by cargo clippy.\n"
      "# TYPE ciagent_clippy_warnings gauge\n"
      "ciagent_clippy_warnings{job_id=\"push-1234\"} 3\n"
      "# HELP ciagent_cache_dependency_hit_ratio Share of the build step's "
      "dependency units that were fresh.\n"
      "# TYPE ciagent_cache_dependency_hit_ratio gauge\n"
      "ciagent_cache_dependency_hit_ratio{job_id=\"push-1234\"} 0.8333\n"
      "# HELP ciagent_cache_match 1 for how the build cache matched (exact, "
      "fallback, none).\n"
      "# TYPE ciagent_cache_match gauge\n"
      "ciagent_cache_match{job_id=\"push-1234\",match=\"exact\"} 0\n"
      "ciagent_cache_match{job_id=\"push-1234\",match=\"fallback\"} 1\n"
      "ciagent_cache_match{job_id=\"push-1234\",match=\"none\"} 0\n"
      "# HELP ciagent_artifact_size_bytes Size of each release executable.\n"
      "# TYPE ciagent_artifact_size_bytes gauge\n"
      "ciagent_artifact_size_bytes{job_id=\"push-1234\",artifact=\"app\"} "
      "4096\n");
  EXPECT_EQ(ParseExposition(text).size(), 24u);
}

TEST(PrometheusTextTest, NamesWhatEndedAnUnsuccessfulJob) {
  PipelineResult result;
  EXPECT_THAT(PrometheusText(result, ""),
              ::testing::Not(HasSubstr("ciagent_job_failure")));
  result.status = JobStatus::kTimeout;
  EXPECT_THAT(PrometheusText(result, ""),
              HasSubstr("ciagent_job_failure{reason=\"timeout\"} 1\n"));
  result.status = JobStatus::kFailed;
  result.steps = {{.name = "check", .status = StepStatus::kOk},
                  {.name = "image", .status = StepStatus::kFailed}};
  EXPECT_THAT(PrometheusText(result, ""),
              HasSubstr("ciagent_job_failure{reason=\"image\"} 1\n"));
}

TEST(PrometheusTextTest, LeavesOutTheJobIdLabelWhenThereIsNoJobId) {
  const std::string text = PrometheusText(FailedTestsRun(), "");
  EXPECT_THAT(text, Not(HasSubstr("job_id")));
  const auto samples = ParseExposition(text);
  EXPECT_EQ(samples.at("ciagent_job_duration_seconds"), 83.25);
  EXPECT_EQ(samples.at("ciagent_clippy_warnings"), 3);
  EXPECT_EQ(samples.at("ciagent_job_result{status=success}"), 0);
  EXPECT_EQ(samples.at("ciagent_job_result{status=failed}"), 1);
  EXPECT_EQ(samples.at("ciagent_step_duration_seconds{step=build,status=ok}"),
            12.3);
  EXPECT_EQ(samples.at("ciagent_tests{outcome=ignored}"), 1);
}

TEST(PrometheusTextTest, EscapesLabelValues) {
  PipelineResult result;
  result.steps = {
      Step("we\"ird\\step\nname", StepStatus::kOk, 0, absl::Seconds(1))};
  result.artifacts = {{.name = "bad\xffname", .size_bytes = 1}};
  const std::string text = PrometheusText(result, "job\"1");
  EXPECT_THAT(text, HasSubstr("step=\"we\\\"ird\\\\step\\nname\""));
  EXPECT_THAT(text, HasSubstr("job_id=\"job\\\"1\""));
  const auto samples = ParseExposition(text);
  EXPECT_EQ(samples.count("ciagent_step_duration_seconds{job_id=job\"1,"
                          "step=we\"ird\\step\nname,status=ok}"),
            1u);
  EXPECT_EQ(samples.count("ciagent_artifact_size_bytes{job_id=job\"1,"
                          "artifact=bad\xEF\xBF\xBDname}"),
            1u);
}

TEST(PrometheusTextTest, WritesNoArtifactFamilyWithoutArtifacts) {
  const std::string text = PrometheusText(PipelineResult(), "j-1");
  EXPECT_THAT(text, Not(HasSubstr("ciagent_artifact_size_bytes")));
  EXPECT_EQ(ParseExposition(text).size(), 1u + 5u + 4u + 1u + 1u + 1u + 1u + 3u);
}

// ---------------------------------------------------------------------------
// HumanSummary

TEST(HumanSummaryTest, AlignsStepsAndListsTestsArtifactsAndResult) {
  EXPECT_EQ(HumanSummary(FailedTestsRun()),
            "Steps:\n"
            "  check   ok        1.2s\n"
            "  build   ok       12.3s\n"
            "  test    failed    3.4s  cargo exited with code 101\n"
            "  clippy  ok        2.0s  3 warnings\n"
            "  audit   skipped   0.0s  cargo-audit and cargo-deny are not "
            "installed\n"
            "Tests: 10 passed, 2 failed, 1 ignored\n"
            "Failed tests:\n"
            "  math::subtracts\n"
            "  net::fetches\n"
            "Artifacts:\n"
            "  app  4.0 KiB  sha256:" +
                std::string(kSha) +
                "  /src/target/release/app\n"
                "Result: failed (test failed: 2 tests failed) in 1m23s\n");
}

// A run with retries and a recorded history: one test failed every
// attempt, one was flaky and quarantined.
PipelineResult RetriedRun() {
  PipelineResult result;
  result.status = JobStatus::kFailed;
  result.reason = "test failed: 1 test failed";
  result.steps = {Step("test", StepStatus::kFailed, 101,
                       absl::Milliseconds(900), "1 test failed")};
  result.tests.passed = 5;
  result.tests.failed = 1;
  result.tests.flaky = 1;
  result.tests.reruns = 3;
  result.tests.failing_names = {"math::subtracts"};
  result.tests.flaky_names = {"net::fetches"};
  result.tests.quarantined_names = {"net::fetches"};
  TestCase failed{.suite = "lib", .name = "math::subtracts",
                  .outcome = TestCase::Outcome::kFailed, .message = "boom"};
  failed.attempts = 3;
  TestCase flaky{.suite = "lib", .name = "net::fetches",
                 .outcome = TestCase::Outcome::kFlaky, .message = "timeout"};
  flaky.attempts = 2;
  flaky.quarantined = true;
  result.tests.cases = {{.suite = "lib", .name = "math::adds"}, failed, flaky};
  result.test_history_branch = "main";
  result.test_history = {{.name = "math::subtracts", .runs = 12, .failed = 3,
                          .failing_since = "0123456789abcdef0123"}};
  return result;
}

TEST(StatusFieldsTest, CarryFlakyAndQuarantinedTestsAndEachTestsAttempts) {
  const auto fields = AsMap(StatusFields(RetriedRun()));
  EXPECT_EQ(fields.at("tests_flaky"), "1");
  EXPECT_EQ(fields.at("flaky_tests"), R"(["net::fetches"])");
  EXPECT_EQ(fields.at("quarantined_tests"), R"(["net::fetches"])");
  EXPECT_EQ(fields.at("test_attempts"),
            R"([{"name":"math::subtracts","suite":"lib","outcome":"failed",)"
            R"("attempts":3,"quarantined":false,"history":{"branch":"main",)"
            R"("runs":12,"failed":3,"failing_since":"0123456789abcdef0123"}},)"
            R"({"name":"net::fetches","suite":"lib","outcome":"flaky",)"
            R"("attempts":2,"quarantined":true}])");
  const std::string metrics = PrometheusText(RetriedRun(), "");
  EXPECT_THAT(metrics, HasSubstr("ciagent_tests{outcome=\"flaky\"} 1\n"));
  EXPECT_THAT(metrics, HasSubstr("ciagent_tests_quarantined 1\n"));
  EXPECT_THAT(metrics, HasSubstr("ciagent_test_reruns 3\n"));
}

TEST(HumanSummaryTest, ListsFlakyTestsAttemptsQuarantineAndHistory) {
  const std::string summary = HumanSummary(RetriedRun());
  EXPECT_THAT(summary, HasSubstr("Tests: 5 passed, 1 failed, 0 ignored, 1 flaky\n"
                                 "Failed tests:\n"
                                 "  math::subtracts  failed all attempts: 3  "
                                 "failed 3 of the last 12 runs on main, "
                                 "failing since 0123456789ab\n"
                                 "Flaky tests:\n"
                                 "  net::fetches  passed on attempt 2  "
                                 "(quarantined)\n"));
}

TEST(HumanSummaryTest, ListsAtMost20FailingTestsAndCountsTheRest) {
  PipelineResult result;
  result.status = JobStatus::kFailed;
  result.steps = {Step("test", StepStatus::kFailed, 101, absl::Seconds(5))};
  result.tests.failed = 135;
  for (int i = 0; i < 100; ++i) {
    result.tests.failing_names.push_back(absl::StrCat("suite::case_", i));
  }
  const std::string summary = HumanSummary(result);
  EXPECT_THAT(summary, HasSubstr("  suite::case_19\n  ... and 115 more\n"));
  EXPECT_THAT(summary, Not(HasSubstr("suite::case_20\n")));
}

TEST(HumanSummaryTest, EscapesControlCharactersInTestNames) {
  PipelineResult result = FailedTestsRun();
  result.tests.failing_names = {"evil\x1b[31mred\nline",
                                "c1\xc2\x9b"
                                "2J",
                                "bad\xff"};
  const std::string summary = HumanSummary(result);
  EXPECT_THAT(summary, Not(HasSubstr("\x1b")));
  EXPECT_THAT(summary, Not(HasSubstr("\xc2\x9b")));
  EXPECT_THAT(summary, HasSubstr("  evil\\x1b[31mred\\nline\n"));
  EXPECT_THAT(summary, HasSubstr("  c1\\u{9b}2J\n"));
  EXPECT_THAT(summary, HasSubstr("  bad\xEF\xBF\xBD\n"));
}

TEST(HumanSummaryTest, SaysTestsWereNotRunWhenTheTestStepWasSkipped) {
  PipelineResult result;
  result.status = JobStatus::kFailed;
  result.reason = "build failed";
  result.steps = {Step("build", StepStatus::kFailed, 101, absl::Seconds(75),
                       "cargo exited with code 101"),
                  Step("test", StepStatus::kSkipped, -1, absl::ZeroDuration(),
                       "needs build, which failed")};
  result.duration = absl::Seconds(3725);
  EXPECT_EQ(HumanSummary(result),
            "Steps:\n"
            "  build  failed   1m15s  cargo exited with code 101\n"
            "  test   skipped   0.0s  needs build, which failed\n"
            "Tests: not run\n"
            "Result: failed (build failed) in 1h02m05s\n");
}

TEST(HumanSummaryTest, SummarisesAnEmptyRun) {
  EXPECT_EQ(HumanSummary(PipelineResult()),
            "Steps:\n"
            "  (none)\n"
            "Tests: not run\n"
            "Result: success in 0.0s\n");
}

}  // namespace
}  // namespace ciagent
