#include "ciagent/pipeline/report.h"

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "ciagent/base/json_writer.h"
#include "ciagent/pipeline/pipeline_config.h"

namespace ciagent {
namespace {

// U+FFFD REPLACEMENT CHARACTER, as UTF-8.
constexpr absl::string_view kReplacement = "\xEF\xBF\xBD";

constexpr JobStatus kTerminalStatuses[] = {
    JobStatus::kSuccess, JobStatus::kFailed, JobStatus::kTimeout,
    JobStatus::kCancelled, JobStatus::kError};

int64_t Millis(absl::Duration d) { return absl::ToInt64Milliseconds(d); }

// Decodes the UTF-8 sequence at s[i]: its length, or 0 when invalid
// (overlong forms, surrogates and values beyond U+10FFFF included).
size_t DecodeUtf8(absl::string_view s, size_t i, uint32_t* code_point) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = byte(i);
  if (c < 0x80) {
    *code_point = c;
    return 1;
  }
  size_t len;
  uint32_t min;
  if ((c & 0xE0) == 0xC0) {
    len = 2;
    min = 0x80;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3;
    min = 0x800;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4;
    min = 0x10000;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  uint32_t cp = c & (0x7F >> len);
  for (size_t k = 1; k < len; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  *code_point = cp;
  return len;
}

// Calls emit(code_point, bytes) for each character of `s`; an invalid byte
// comes as U+FFFD.
template <typename Emit>
void ForEachCharacter(absl::string_view s, Emit emit) {
  size_t i = 0;
  while (i < s.size()) {
    uint32_t cp = 0;
    const size_t len = DecodeUtf8(s, i, &cp);
    if (len == 0) {
      emit(0xFFFD, kReplacement);
      ++i;
    } else {
      emit(cp, s.substr(i, len));
      i += len;
    }
  }
}

// ---------------------------------------------------------------------------
// JSON

template <typename T, typename ToJson>
std::string JsonArray(const std::vector<T>& items, ToJson to_json,
                      size_t limit = SIZE_MAX) {
  std::string out = "[";
  const size_t n = std::min(items.size(), limit);
  for (size_t i = 0; i < n; ++i) {
    if (i > 0) out.push_back(',');
    absl::StrAppend(&out, to_json(items[i]));
  }
  out.push_back(']');
  return out;
}

std::string StepJson(const StepRecord& step) {
  JsonObjectBuilder json;
  json.Add("name", step.name)
      .Add("status", StepStatusName(step.status))
      .Add("exit_code", step.exit_code)
      .Add("duration_ms", Millis(step.duration))
      .Add("reason", step.reason)
      .Add("warnings", step.warnings)
      .Add("allow_failure", step.allow_failure);
  return std::move(json).Build();
}

std::string ArtifactJson(const Artifact& artifact, bool with_path) {
  JsonObjectBuilder json;
  json.Add("name", artifact.name);
  if (with_path) json.Add("path", artifact.path);
  json.Add("size_bytes", artifact.size_bytes).Add("sha256", artifact.sha256);
  return std::move(json).Build();
}

// A ratio for JSON and Prometheus: "0", "0.5", "1".
std::string Ratio(double value) { return absl::StrFormat("%.4g", value); }

// {} when no image was pushed.
std::string ImageJson(const ImageRecord& image) {
  JsonObjectBuilder json;
  if (image.digest.empty()) return std::move(json).Build();
  std::string tags = "[";
  for (size_t i = 0; i < image.tags.size(); ++i) {
    if (i > 0) tags += ",";
    AppendJsonString(&tags, image.tags[i]);
  }
  tags += "]";
  json.Add("reference", image.reference)
      .Add("digest", image.digest)
      .AddRaw("tags", tags)
      .Add("builder", image.builder)
      .Add("blobs_uploaded", image.blobs_uploaded)
      .Add("blobs_existing", image.blobs_existing)
      .Add("bytes_uploaded", image.bytes_uploaded)
      .Add("build_ms", Millis(image.build_duration))
      .Add("push_ms", Millis(image.push_duration));
  return std::move(json).Build();
}

// "test" when the test step failed first; "timeout", "cancelled" or "error"
// for those statuses; "unknown" for a failed job without a failed step.
std::string FailureReason(const PipelineResult& result) {
  switch (result.status) {
    case JobStatus::kTimeout: return "timeout";
    case JobStatus::kCancelled: return "cancelled";
    case JobStatus::kError: return "error";
    default: break;
  }
  for (const StepRecord& step : result.steps) {
    if (step.status == StepStatus::kFailed && !step.allow_failure) {
      return step.name;
    }
  }
  return "unknown";
}

std::string CacheJson(const CacheStats& cache) {
  JsonObjectBuilder json;
  json.Add("key", cache.key)
      .Add("match", cache.match)
      .Add("uncached_reason", cache.uncached_reason)
      .Add("units", cache.units)
      .Add("fresh_units", cache.fresh_units)
      .Add("dependency_units", cache.dependency_units)
      .Add("fresh_dependency_units", cache.fresh_dependency_units)
      .AddRaw("dependency_hit_rate", Ratio(cache.dependency_hit_rate));
  if (cache.sccache_used) {
    json.Add("sccache_hits", cache.sccache_hits)
        .Add("sccache_misses", cache.sccache_misses);
  }
  return std::move(json).Build();
}

std::string StepsJson(const PipelineResult& result) {
  return JsonArray(result.steps, StepJson);
}

std::string FailedTestsJson(const PipelineResult& result) {
  return JsonArray(result.tests.failing_names, JsonQuote, kMaxFailingNames);
}

std::string FlakyTestsJson(const PipelineResult& result) {
  return JsonArray(result.tests.flaky_names, JsonQuote, kMaxFailingNames);
}

std::string QuarantinedTestsJson(const PipelineResult& result) {
  return JsonArray(result.tests.quarantined_names, JsonQuote,
                   kMaxFailingNames);
}

absl::string_view OutcomeName(TestCase::Outcome outcome) {
  switch (outcome) {
    case TestCase::Outcome::kPassed: return "passed";
    case TestCase::Outcome::kFailed: return "failed";
    case TestCase::Outcome::kIgnored: return "ignored";
    case TestCase::Outcome::kFlaky: return "flaky";
  }
  return "passed";
}

// The failed and flaky cases kept, in output order.
std::vector<const TestCase*> UnstableCases(const TestResults& tests) {
  std::vector<const TestCase*> cases;
  for (const TestCase& test : tests.cases) {
    if (test.outcome == TestCase::Outcome::kFailed ||
        test.outcome == TestCase::Outcome::kFlaky) {
      cases.push_back(&test);
    }
  }
  return cases;
}

const TestHistory* HistoryOf(const PipelineResult& result,
                             absl::string_view name) {
  for (const TestHistory& history : result.test_history) {
    if (history.name == name) return &history;
  }
  return nullptr;
}

std::string TestAttemptsJson(const PipelineResult& result) {
  return JsonArray(
      UnstableCases(result.tests),
      [&result](const TestCase* test) {
        JsonObjectBuilder json;
        json.Add("name", test->name)
            .Add("suite", test->suite)
            .Add("outcome", OutcomeName(test->outcome))
            .Add("attempts", test->attempts)
            .Add("quarantined", test->quarantined);
        if (const TestHistory* history = HistoryOf(result, test->name)) {
          JsonObjectBuilder past;
          past.Add("branch", result.test_history_branch)
              .Add("runs", history->runs)
              .Add("failed", history->failed)
              .Add("failing_since", history->failing_since);
          json.AddRaw("history", std::move(past).Build());
        }
        return std::move(json).Build();
      },
      2 * kMaxFailingNames);
}

std::string ArtifactsJson(const PipelineResult& result, bool with_path) {
  return JsonArray(result.artifacts, [with_path](const Artifact& artifact) {
    return ArtifactJson(artifact, with_path);
  });
}

// ---------------------------------------------------------------------------
// Prometheus

// A label value: backslash, double quote and newline escaped, as the text
// format requires; invalid UTF-8 replaced.
void AppendLabelValue(std::string* out, absl::string_view value) {
  ForEachCharacter(value, [out](uint32_t cp, absl::string_view bytes) {
    switch (cp) {
      case '\\':
        absl::StrAppend(out, "\\\\");
        break;
      case '"':
        absl::StrAppend(out, "\\\"");
        break;
      case '\n':
        absl::StrAppend(out, "\\n");
        break;
      default:
        absl::StrAppend(out, bytes);
    }
  });
}

using Labels =
    std::initializer_list<std::pair<absl::string_view, absl::string_view>>;

class PrometheusWriter {
 public:
  explicit PrometheusWriter(absl::string_view job_id) : job_id_(job_id) {}

  void Family(absl::string_view name, absl::string_view help) {
    absl::StrAppend(&text_, "# HELP ", name, " ", help, "\n# TYPE ", name,
                    " gauge\n");
  }
  void Sample(absl::string_view name, Labels labels, absl::string_view value) {
    absl::StrAppend(&text_, name);
    bool first = true;
    const auto label = [&](absl::string_view key, absl::string_view v) {
      absl::StrAppend(&text_, first ? "{" : ",", key, "=\"");
      AppendLabelValue(&text_, v);
      text_.push_back('"');
      first = false;
    };
    if (!job_id_.empty()) label("job_id", job_id_);
    for (const auto& [key, v] : labels) label(key, v);
    if (!first) text_.push_back('}');
    absl::StrAppend(&text_, " ", value, "\n");
  }
  void Sample(absl::string_view name, Labels labels, int64_t value) {
    Sample(name, labels, absl::StrCat(value));
  }
  void Sample(absl::string_view name, Labels labels, absl::Duration value) {
    Sample(name, labels, absl::StrFormat("%.3f", absl::ToDoubleSeconds(value)));
  }

  std::string Build() && { return std::move(text_); }

 private:
  absl::string_view job_id_;
  std::string text_;
};

// ---------------------------------------------------------------------------
// Human summary

// `text` for a terminal: control characters (C0, DEL, C1) escaped, so that
// no name can move the cursor or set colours; invalid UTF-8 replaced.
std::string Printable(absl::string_view text) {
  std::string out;
  ForEachCharacter(text, [&out](uint32_t cp, absl::string_view bytes) {
    if (cp == '\n') {
      absl::StrAppend(&out, "\\n");
    } else if (cp == '\t') {
      absl::StrAppend(&out, "\\t");
    } else if (cp == '\r') {
      absl::StrAppend(&out, "\\r");
    } else if (cp < 0x20 || cp == 0x7F) {
      absl::StrAppend(&out, absl::StrFormat("\\x%02x", cp));
    } else if (cp >= 0x80 && cp <= 0x9F) {
      absl::StrAppend(&out, absl::StrFormat("\\u{%x}", cp));
    } else {
      absl::StrAppend(&out, bytes);
    }
  });
  return out;
}

// "0.4s", "12.3s", "2m05s", "1h02m03s".
std::string HumanDuration(absl::Duration d) {
  if (d < absl::ZeroDuration()) d = absl::ZeroDuration();
  if (d < absl::Minutes(1)) {
    return absl::StrFormat("%.1fs", absl::ToDoubleSeconds(d));
  }
  const int64_t s = absl::ToInt64Seconds(d);
  if (s < 3600) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%dh%02dm%02ds", s / 3600, s / 60 % 60, s % 60);
}

// "512 B", "4.0 KiB", "12.3 MiB", "1.2 GiB".
std::string HumanSize(int64_t bytes) {
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  const char* const kUnits[] = {"KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes) / 1024;
  size_t unit = 0;
  while (value >= 1024 && unit + 1 < std::size(kUnits)) {
    value /= 1024;
    ++unit;
  }
  return absl::StrFormat("%.1f %s", value, kUnits[unit]);
}

std::string Plural(int64_t n, absl::string_view word) {
  return absl::StrCat(n, " ", word, n == 1 ? "" : "s");
}

size_t Width(absl::string_view text) {
  size_t width = 0;
  ForEachCharacter(text, [&width](uint32_t, absl::string_view) { ++width; });
  return width;
}

// `text` padded with spaces to `width` characters.
std::string PadRight(absl::string_view text, size_t width) {
  std::string out(text);
  const size_t w = Width(text);
  if (w < width) out.append(width - w, ' ');
  return out;
}

std::string PadLeft(absl::string_view text, size_t width) {
  const size_t w = Width(text);
  std::string out(w < width ? width - w : 0, ' ');
  absl::StrAppend(&out, text);
  return out;
}

// "Failed tests:" and up to kSummaryFailingNames of `names`, each with its
// attempts when it was retried and a mark when quarantined.
void AppendTestList(absl::string_view title, const PipelineResult& result,
                    TestCase::Outcome outcome,
                    const std::vector<std::string>& names, int64_t count,
                    std::string* out) {
  const TestResults& tests = result.tests;
  if (names.empty()) return;
  absl::StrAppend(out, title, ":\n");
  const size_t shown = std::min(names.size(), kSummaryFailingNames);
  for (size_t i = 0; i < shown; ++i) {
    absl::StrAppend(out, "  ", Printable(names[i]));
    const auto test = std::find_if(
        tests.cases.begin(), tests.cases.end(), [&](const TestCase& c) {
          return c.outcome == outcome && c.name == names[i];
        });
    if (test != tests.cases.end() && test->attempts > 1) {
      absl::StrAppend(out, outcome == TestCase::Outcome::kFlaky
                               ? "  passed on attempt "
                               : "  failed all attempts: ",
                      test->attempts);
    }
    if (test != tests.cases.end() && test->quarantined) {
      absl::StrAppend(out, "  (quarantined)");
    }
    if (const TestHistory* history = HistoryOf(result, names[i])) {
      absl::StrAppend(out, "  failed ", history->failed, " of the last ",
                      history->runs, " runs on ",
                      Printable(result.test_history_branch));
      if (!history->failing_since.empty()) {
        absl::StrAppend(out, ", failing since ",
                        Printable(history->failing_since.substr(0, 12)));
      }
    }
    absl::StrAppend(out, "\n");
  }
  const int64_t total = std::max(count, static_cast<int64_t>(names.size()));
  if (total > static_cast<int64_t>(shown)) {
    absl::StrAppend(out, "  ... and ", total - static_cast<int64_t>(shown),
                    " more\n");
  }
}

}  // namespace

std::string ResultJson(const PipelineResult& result) {
  JsonObjectBuilder tests;
  tests.Add("passed", result.tests.passed)
      .Add("failed", result.tests.failed)
      .Add("ignored", result.tests.ignored)
      .Add("flaky", result.tests.flaky)
      .Add("reruns", result.tests.reruns);
  JsonObjectBuilder json;
  json.Add("status", JobStatusName(result.status))
      .Add("reason", result.reason)
      .AddRaw("steps", StepsJson(result))
      .AddRaw("tests", std::move(tests).Build())
      .AddRaw("failed_tests", FailedTestsJson(result))
      .AddRaw("flaky_tests", FlakyTestsJson(result))
      .AddRaw("quarantined_tests", QuarantinedTestsJson(result))
      .AddRaw("test_attempts", TestAttemptsJson(result))
      .AddRaw("artifacts", ArtifactsJson(result, /*with_path=*/true))
      .Add("clippy_warnings", result.clippy_warnings)
      .AddRaw("cache", CacheJson(result.cache))
      .AddRaw("image", ImageJson(result.image))
      .AddRaw("config", PipelineConfigJson(result.config))
      .Add("duration_ms", Millis(result.duration));
  return std::move(json).Build();
}

std::vector<std::pair<std::string, std::string>> StatusFields(
    const PipelineResult& result) {
  return {
      {"tests_passed", absl::StrCat(result.tests.passed)},
      {"tests_failed", absl::StrCat(result.tests.failed)},
      {"tests_ignored", absl::StrCat(result.tests.ignored)},
      {"failed_tests", FailedTestsJson(result)},
      {"tests_flaky", absl::StrCat(result.tests.flaky)},
      {"flaky_tests", FlakyTestsJson(result)},
      {"quarantined_tests", QuarantinedTestsJson(result)},
      {"test_attempts", TestAttemptsJson(result)},
      {"artifacts", ArtifactsJson(result, /*with_path=*/false)},
      {"steps", StepsJson(result)},
      {"clippy_warnings", absl::StrCat(result.clippy_warnings)},
      {"pipeline_duration_ms", absl::StrCat(Millis(result.duration))},
      {"cache", CacheJson(result.cache)},
      {"image", result.image.reference},
      {"image_digest", result.image.digest},
      {"config", PipelineConfigJson(result.config)},
  };
}

std::string PrometheusText(const PipelineResult& result,
                           absl::string_view job_id) {
  PrometheusWriter out(job_id);
  out.Family("ciagent_job_duration_seconds",
             "Duration of the job's build pipeline.");
  out.Sample("ciagent_job_duration_seconds", {}, result.duration);

  out.Family("ciagent_job_result",
             "1 for the job's final status, 0 for the other statuses.");
  for (JobStatus status : kTerminalStatuses) {
    out.Sample("ciagent_job_result", {{"status", JobStatusName(status)}},
               int64_t{status == result.status ? 1 : 0});
  }

  if (result.status != JobStatus::kSuccess) {
    out.Family("ciagent_job_failure",
               "1 for what ended an unsuccessful job: the first failed step, "
               "or timeout, cancelled, error.");
    out.Sample("ciagent_job_failure", {{"reason", FailureReason(result)}},
               int64_t{1});
  }

  out.Family("ciagent_step_duration_seconds",
             "Duration of each pipeline step, with the step's status.");
  for (const StepRecord& step : result.steps) {
    out.Sample("ciagent_step_duration_seconds",
               {{"step", step.name}, {"status", StepStatusName(step.status)}},
               step.duration);
  }

  bool allowed_failures = false;
  for (const StepRecord& step : result.steps) {
    if (!step.allow_failure) continue;
    if (!allowed_failures) {
      out.Family("ciagent_step_allowed_failure",
                 "1 for each step that failed without failing the job "
                 "(allow-failure in the repository's configuration).");
      allowed_failures = true;
    }
    out.Sample("ciagent_step_allowed_failure", {{"step", step.name}},
               int64_t{1});
  }

  out.Family("ciagent_tests", "Tests of the job, by outcome.");
  out.Sample("ciagent_tests", {{"outcome", "passed"}},
             result.tests.passed);
  out.Sample("ciagent_tests", {{"outcome", "failed"}},
             result.tests.failed);
  out.Sample("ciagent_tests", {{"outcome", "ignored"}},
             result.tests.ignored);
  out.Sample("ciagent_tests", {{"outcome", "flaky"}}, result.tests.flaky);
  out.Family("ciagent_tests_quarantined",
             "Failed or flaky tests of the job that were quarantined.");
  out.Sample("ciagent_tests_quarantined", {},
             static_cast<int64_t>(result.tests.quarantined_names.size()));
  out.Family("ciagent_test_reruns", "Reruns of failed tests (retries).");
  out.Sample("ciagent_test_reruns", {}, result.tests.reruns);

  out.Family("ciagent_clippy_warnings", "Warnings reported by cargo clippy.");
  out.Sample("ciagent_clippy_warnings", {}, result.clippy_warnings);

  out.Family("ciagent_cache_dependency_hit_ratio",
             "Share of the build step's dependency units that were fresh.");
  out.Sample("ciagent_cache_dependency_hit_ratio", {},
             Ratio(result.cache.dependency_hit_rate));
  out.Family("ciagent_cache_match",
             "1 for how the build cache matched (exact, fallback, none).");
  for (absl::string_view match : {"exact", "fallback", "none"}) {
    out.Sample("ciagent_cache_match", {{"match", match}},
               int64_t{result.cache.match == match ? 1 : 0});
  }

  if (result.cache.sccache_used) {
    out.Family("ciagent_sccache_compilations",
               "Compilations of the run through sccache, by result.");
    out.Sample("ciagent_sccache_compilations", {{"result", "hit"}},
               result.cache.sccache_hits);
    out.Sample("ciagent_sccache_compilations", {{"result", "miss"}},
               result.cache.sccache_misses);
  }

  if (!result.image.digest.empty()) {
    out.Family("ciagent_image_build_seconds", "Duration of the image build.");
    out.Sample("ciagent_image_build_seconds", {}, result.image.build_duration);
    out.Family("ciagent_image_push_seconds", "Duration of the image push.");
    out.Sample("ciagent_image_push_seconds", {}, result.image.push_duration);
    out.Family("ciagent_image_uploaded_bytes",
               "Blob bytes the push sent (0 when the registry had them all).");
    out.Sample("ciagent_image_uploaded_bytes", {}, result.image.bytes_uploaded);
  }

  if (!result.artifacts.empty()) {
    out.Family("ciagent_artifact_size_bytes",
               "Size of each release executable.");
    for (const Artifact& artifact : result.artifacts) {
      out.Sample("ciagent_artifact_size_bytes", {{"artifact", artifact.name}},
                 artifact.size_bytes);
    }
  }
  return std::move(out).Build();
}

std::string HumanSummary(const PipelineResult& result) {
  std::string out;
  const StepRecord* test_step = nullptr;

  // Steps: name, status, duration (right-aligned), reason.
  size_t name_width = 0, status_width = 0, duration_width = 0;
  std::vector<std::string> names, durations;
  for (const StepRecord& step : result.steps) {
    names.push_back(Printable(step.name));
    durations.push_back(HumanDuration(step.duration));
    name_width = std::max(name_width, Width(names.back()));
    status_width = std::max(status_width, StepStatusName(step.status).size());
    duration_width = std::max(duration_width, durations.back().size());
    if (step.name == "test") test_step = &step;
  }
  absl::StrAppend(&out, "Steps:\n");
  if (result.steps.empty()) absl::StrAppend(&out, "  (none)\n");
  for (size_t i = 0; i < result.steps.size(); ++i) {
    const StepRecord& step = result.steps[i];
    std::string note = Printable(step.reason);
    if (step.allow_failure) {
      note = absl::StrCat("allowed to fail", note.empty() ? "" : ": ", note);
    }
    if (note.empty() && step.warnings > 0) {
      note = Plural(step.warnings, "warning");
    }
    std::string line =
        absl::StrCat("  ", PadRight(names[i], name_width), "  ",
                     PadRight(StepStatusName(step.status), status_width), "  ",
                     PadLeft(durations[i], duration_width));
    if (!note.empty()) absl::StrAppend(&line, "  ", note);
    absl::StrAppend(&out, line, "\n");
  }

  // Tests.
  const TestResults& tests = result.tests;
  const bool tests_ran =
      test_step != nullptr && test_step->status != StepStatus::kSkipped;
  if (!tests_ran &&
      tests.passed + tests.failed + tests.ignored + tests.flaky == 0) {
    absl::StrAppend(&out, "Tests: not run\n");
  } else {
    absl::StrAppend(&out, "Tests: ", tests.passed, " passed, ", tests.failed,
                    " failed, ", tests.ignored, " ignored");
    if (tests.flaky > 0) absl::StrAppend(&out, ", ", tests.flaky, " flaky");
    absl::StrAppend(&out, "\n");
  }
  AppendTestList("Failed tests", result, TestCase::Outcome::kFailed,
                 tests.failing_names, tests.failed, &out);
  AppendTestList("Flaky tests", result, TestCase::Outcome::kFlaky,
                 tests.flaky_names, tests.flaky, &out);

  // Artifacts: name, size (right-aligned), digest, path.
  if (!result.artifacts.empty()) {
    absl::StrAppend(&out, "Artifacts:\n");
    size_t artifact_width = 0, size_width = 0;
    for (const Artifact& artifact : result.artifacts) {
      artifact_width =
          std::max(artifact_width, Width(Printable(artifact.name)));
      size_width = std::max(size_width, HumanSize(artifact.size_bytes).size());
    }
    for (const Artifact& artifact : result.artifacts) {
      absl::StrAppend(&out, "  ",
                      PadRight(Printable(artifact.name), artifact_width), "  ",
                      PadLeft(HumanSize(artifact.size_bytes), size_width),
                      "  sha256:", Printable(artifact.sha256), "  ",
                      Printable(artifact.path), "\n");
    }
  }

  if (!result.image.digest.empty()) {
    absl::StrAppend(&out, "Image: ", Printable(result.image.reference), "@",
                    result.image.digest, "\n");
  }

  // Final status.
  absl::StrAppend(&out, "Result: ", JobStatusName(result.status));
  if (!result.reason.empty()) {
    absl::StrAppend(&out, " (", Printable(result.reason), ")");
  }
  absl::StrAppend(&out, " in ", HumanDuration(result.duration), "\n");
  return out;
}

}  // namespace ciagent
