#include "format.h"

#include <simdjson.h>

#include <algorithm>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "ciagent/base/clock.h"
#include "ciagent/base/json_writer.h"

namespace ciagent {
namespace {

namespace dom = simdjson::dom;

constexpr char kReset[] = "\033[0m";
constexpr char kBold[] = "\033[1m";
constexpr char kDim[] = "\033[2m";
constexpr char kRed[] = "\033[31m";
constexpr char kGreen[] = "\033[32m";
constexpr char kYellow[] = "\033[33m";
constexpr char kCyan[] = "\033[36m";

// Longest reason a table shows; `show` prints it whole.
constexpr size_t kReasonWidth = 60;

// Display width: UTF-8 code points (continuation bytes do not count).
size_t Width(absl::string_view text) {
  return std::count_if(text.begin(), text.end(), [](char c) {
    return (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  });
}

// `text` cut to `width` code points, "…" marking the cut.
std::string Shorten(absl::string_view text, size_t width) {
  if (Width(text) <= width) return std::string(text);
  size_t points = 0;
  size_t end = 0;
  for (; end < text.size(); ++end) {
    const bool starts_point =
        (static_cast<unsigned char>(text[end]) & 0xC0) != 0x80;
    if (starts_point && ++points == width) break;
  }
  return absl::StrCat(text.substr(0, end), "…");
}

std::string Paint(absl::string_view text, const char* code,
                  const Style& style) {
  if (!style.color || text.empty()) return std::string(text);
  return absl::StrCat(code, text, kReset);
}

std::optional<absl::Duration> MillisField(const JobRecord& job,
                                          absl::string_view name) {
  int64_t millis = 0;
  if (!absl::SimpleAtoi(job.Get(name), &millis)) return std::nullopt;
  return absl::Milliseconds(millis);
}

// "2026-11-27T05:40:00.123Z (3m05s ago)", or "" when unset.
std::string When(absl::string_view stamp, absl::Time now) {
  std::optional<absl::Time> time = ParseTimestamp(stamp);
  if (!time.has_value()) return std::string(stamp);
  return absl::StrCat(stamp, " (", FormatAgo(*time, now), ")");
}

// A JSON value of the status hash, parsed; nullopt when it is not JSON.
// The parser owns the element: one parser per value.
std::optional<dom::element> ParseJsonField(dom::parser& parser,
                                           absl::string_view value) {
  dom::element element;
  if (value.empty() ||
      parser.parse(value.data(), value.size()).get(element) !=
          simdjson::SUCCESS) {
    return std::nullopt;
  }
  return element;
}

std::string StringOf(dom::element object, const char* key) {
  std::string_view text;
  if (object[key].get(text) != simdjson::SUCCESS) return "";
  return std::string(text);
}

int64_t IntOf(dom::element object, const char* key) {
  int64_t value = 0;
  if (object[key].get(value) != simdjson::SUCCESS) return 0;
  return value;
}

// The JSON array of one object per element of `items`.
template <typename T, typename F>
std::string JsonArray(const std::vector<T>& items, F object_of) {
  std::vector<std::string> objects;
  for (const T& item : items) objects.push_back(object_of(item));
  return absl::StrCat("[", absl::StrJoin(objects, ","), "]");
}

std::string FieldsJson(absl::string_view id_name, absl::string_view id,
                       const RedisFields& fields) {
  JsonObjectBuilder object;
  object.Add(id_name, id);
  for (const auto& [name, value] : fields) object.Add(name, value);
  return std::move(object).Build();
}

std::string StepsTable(absl::string_view steps_json, const Style& style) {
  dom::parser parser;
  std::optional<dom::element> steps = ParseJsonField(parser, steps_json);
  dom::array array;
  if (!steps.has_value() || steps->get(array) != simdjson::SUCCESS) return "";
  TextTable table({"STEP", "STATUS", "TIME", "EXIT", "REASON"});
  for (dom::element step : array) {
    const std::string status = StringOf(step, "status");
    const int64_t exit_code = IntOf(step, "exit_code");
    std::string reason = StringOf(step, "reason");
    bool allowed = false;
    if (step["allow_failure"].get(allowed) == simdjson::SUCCESS && allowed) {
      reason = absl::StrCat(reason, reason.empty() ? "" : " ", "(allowed)");
    }
    if (int64_t warnings = IntOf(step, "warnings"); warnings > 0) {
      reason = absl::StrCat(reason, reason.empty() ? "" : "; ", warnings,
                            " warnings");
    }
    std::vector<std::string> cells = {
        StringOf(step, "name"), status,
        FormatElapsed(absl::Milliseconds(IntOf(step, "duration_ms"))),
        exit_code < 0 ? "-" : absl::StrCat(exit_code), reason};
    std::vector<std::string> colored = cells;
    colored[1] = PaintStatus(status, style);
    table.AddRow(std::move(cells), std::move(colored));
  }
  return table.Render(style);
}

std::string TestsLine(const JobRecord& job) {
  if (job.Get("tests_passed").empty()) return "";
  std::string line = absl::StrCat(job.Get("tests_passed"), " passed, ",
                                  job.Get("tests_failed"), " failed, ",
                                  job.Get("tests_ignored"), " ignored");
  dom::parser parser;
  dom::array names;
  if (std::optional<dom::element> failed =
          ParseJsonField(parser, job.Get("failed_tests"));
      failed.has_value() && failed->get(names) == simdjson::SUCCESS) {
    for (dom::element name : names) {
      std::string_view text;
      if (name.get(text) == simdjson::SUCCESS) {
        absl::StrAppend(&line, "\n            failed: ",
                        absl::string_view(text.data(), text.size()));
      }
    }
  }
  return line;
}

std::string CacheLine(absl::string_view cache_json) {
  dom::parser parser;
  std::optional<dom::element> cache = ParseJsonField(parser, cache_json);
  if (!cache.has_value()) return "";
  std::string line = absl::StrCat(StringOf(*cache, "match"), " match");
  if (std::string why = StringOf(*cache, "uncached_reason"); !why.empty()) {
    absl::StrAppend(&line, " (", why, ")");
  }
  const int64_t units = IntOf(*cache, "dependency_units");
  if (units > 0) {
    absl::StrAppend(&line, ", ", IntOf(*cache, "fresh_dependency_units"), "/",
                    units, " dependency units fresh");
  }
  return line;
}

std::string EarlierReasons(absl::string_view earlier_json) {
  dom::parser parser;
  std::optional<dom::element> earlier = ParseJsonField(parser, earlier_json);
  dom::array array;
  if (!earlier.has_value() || earlier->get(array) != simdjson::SUCCESS) {
    return "";
  }
  std::string text;
  for (dom::element reason : array) {
    absl::StrAppend(&text, text.empty() ? "" : "\n            ",
                    StringOf(reason, "at"), "  ", StringOf(reason, "reason"),
                    " (dead letter ", StringOf(reason, "dead_letter_id"), ")");
  }
  return text;
}

absl::string_view OutcomeName(RedriveOutcome outcome) {
  switch (outcome) {
    case RedriveOutcome::kRedriven:
      return "redriven";
    case RedriveOutcome::kWouldRedrive:
      return "would redrive";
    case RedriveOutcome::kRefused:
      return "refused";
    case RedriveOutcome::kMissing:
      return "missing";
  }
  return "refused";
}

}  // namespace

std::string FormatAge(absl::Duration age) {
  const int64_t s = std::max<int64_t>(0, absl::ToInt64Seconds(age));
  if (s < 60) return absl::StrCat(s, "s");
  if (s < 3600) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  if (s < 86400) return absl::StrFormat("%dh%02dm", s / 3600, s % 3600 / 60);
  return absl::StrFormat("%dd%02dh", s / 86400, s % 86400 / 3600);
}

std::string FormatElapsed(absl::Duration elapsed) {
  if (elapsed < absl::Seconds(1)) {
    return absl::StrCat(std::max<int64_t>(0, absl::ToInt64Milliseconds(elapsed)),
                        "ms");
  }
  if (elapsed < absl::Seconds(60)) {
    return absl::StrFormat("%.1fs", absl::ToDoubleSeconds(elapsed));
  }
  return FormatAge(elapsed);
}

std::string FormatAgo(absl::Time time, absl::Time now) {
  const absl::Duration ago = now - time;
  if (ago <= -absl::Seconds(1)) return absl::StrCat("in ", FormatAge(-ago));
  if (ago < absl::Seconds(1)) return "just now";
  return absl::StrCat(FormatAge(ago), " ago");
}

std::string PaintStatus(absl::string_view status, const Style& style) {
  const char* code = nullptr;
  if (status == "success" || status == "ok") code = kGreen;
  if (status == "failed" || status == "error" || status == "timeout") {
    code = kRed;
  }
  if (status == "cancelled" || status == "skipped") code = kYellow;
  if (status == "running") code = kCyan;
  return code == nullptr ? std::string(status) : Paint(status, code, style);
}

TextTable::TextTable(std::vector<std::string> header)
    : header_(std::move(header)) {}

void TextTable::AddRow(std::vector<std::string> cells,
                       std::vector<std::string> colored) {
  cells.resize(header_.size());
  if (colored.size() != cells.size()) colored = cells;
  rows_.push_back(std::move(cells));
  colored_.push_back(std::move(colored));
}

std::string TextTable::Render(const Style& style) const {
  std::vector<size_t> widths;
  for (const std::string& name : header_) widths.push_back(Width(name));
  for (const auto& row : rows_) {
    for (size_t c = 0; c < row.size(); ++c) {
      widths[c] = std::max(widths[c], Width(row[c]));
    }
  }
  std::string out;
  const auto line = [&](const std::vector<std::string>& plain,
                        const std::vector<std::string>& shown) {
    std::string text;
    for (size_t c = 0; c < plain.size(); ++c) {
      if (c > 0) text += "  ";
      text += shown[c];
      if (c + 1 < plain.size()) text.append(widths[c] - Width(plain[c]), ' ');
    }
    absl::StrAppend(&out, absl::StripTrailingAsciiWhitespace(text), "\n");
  };
  std::vector<std::string> bold_header;
  for (const std::string& name : header_) {
    bold_header.push_back(Paint(name, kBold, style));
  }
  line(header_, bold_header);
  for (size_t r = 0; r < rows_.size(); ++r) {
    line(rows_[r], style.color ? colored_[r] : rows_[r]);
  }
  return out;
}

std::string StatsText(const QueueStats& stats, const QueueOptions& queue,
                      const Style& style) {
  std::string out = absl::StrCat(Paint("stream ", kBold, style), queue.stream,
                                 ", group ", queue.group, "\n");
  const auto row = [&](absl::string_view label, absl::string_view value) {
    absl::StrAppend(&out, absl::StrFormat("  %-13s %s\n", label, value));
  };
  const auto oldest = [](const std::optional<absl::Duration>& age) {
    return age.has_value() ? absl::StrCat(", oldest ", FormatAge(*age)) : "";
  };
  if (!stats.group_exists) {
    row("group", "none yet (agents create it with --create-group; "
                 "ci-queue enqueue too)");
  } else {
    row("waiting", stats.lag.has_value()
                       ? absl::StrCat(*stats.lag, oldest(stats.oldest_waiting_age))
                       : std::string("unknown (lag not readable: see "
                                     "docs/redis-schema.md)"));
    row("pending", absl::StrCat(stats.pending, oldest(stats.oldest_pending_age),
                                " (running or requeued)"));
  }
  row("entries", absl::StrCat(stats.length, " in the stream"));
  row("dead letters", absl::StrCat(stats.dead_letters));
  row("recent jobs", absl::StrCat(stats.recent_jobs));
  if (stats.consumers.empty()) return out;
  absl::StrAppend(&out, Paint("consumers", kBold, style), "\n");
  TextTable table({"  NAME", "PENDING", "IDLE"});
  for (const ConsumerStats& consumer : stats.consumers) {
    table.AddRow({absl::StrCat("  ", consumer.name),
                  absl::StrCat(consumer.pending), FormatAge(consumer.idle)});
  }
  return absl::StrCat(out, table.Render(Style{}));
}

std::string StatsJson(const QueueStats& stats, const QueueOptions& queue) {
  const auto optional_ms = [](const std::optional<absl::Duration>& d) {
    return d.has_value() ? absl::StrCat(absl::ToInt64Milliseconds(*d))
                         : std::string("null");
  };
  JsonObjectBuilder object;
  object.Add("stream", queue.stream)
      .Add("group", queue.group)
      .Add("group_exists", stats.group_exists)
      .Add("length", stats.length)
      .AddRaw("lag", stats.lag.has_value() ? absl::StrCat(*stats.lag) : "null")
      .Add("pending", stats.pending)
      .AddRaw("oldest_waiting_age_ms", optional_ms(stats.oldest_waiting_age))
      .AddRaw("oldest_pending_age_ms", optional_ms(stats.oldest_pending_age))
      .Add("dead_letters", stats.dead_letters)
      .Add("recent_jobs", stats.recent_jobs)
      .AddRaw("consumers",
              JsonArray(stats.consumers, [](const ConsumerStats& c) {
                JsonObjectBuilder consumer;
                consumer.Add("name", c.name)
                    .Add("pending", c.pending)
                    .Add("idle_ms", absl::ToInt64Milliseconds(c.idle));
                return std::move(consumer).Build();
              }));
  return std::move(object).Build();
}

std::string JobListText(const std::vector<JobRecord>& jobs, absl::Time now,
                        const Style& style) {
  if (jobs.empty()) return "no recent jobs\n";
  TextTable table({"JOB", "STATUS", "ENQUEUED", "TIME", "ATTEMPT", "BRANCH",
                   "COMMIT", "REASON"});
  for (const JobRecord& job : jobs) {
    std::string enqueued;
    if (auto t = ParseTimestamp(job.Get("enqueued_at"))) {
      enqueued = FormatAgo(*t, now);
    }
    std::string took;
    if (auto d = MillisField(job, "duration_ms")) {
      took = FormatElapsed(*d);
    } else if (auto t = ParseTimestamp(job.Get("started_at"));
               t.has_value() && job.Get("status") == "running") {
      took = absl::StrCat(FormatAge(now - *t), "…");
    }
    std::vector<std::string> cells = {
        job.job_id,
        std::string(job.Get("status")),
        enqueued,
        took,
        std::string(job.Get("attempt")),
        std::string(job.Get("branch")),
        std::string(job.Get("commit").substr(0, 12)),
        Shorten(job.Get("reason"), kReasonWidth)};
    std::vector<std::string> colored = cells;
    colored[1] = PaintStatus(cells[1], style);
    table.AddRow(std::move(cells), std::move(colored));
  }
  return table.Render(style);
}

std::string JobListJson(const std::vector<JobRecord>& jobs) {
  return JsonArray(jobs, [](const JobRecord& job) {
    return FieldsJson("job_id", job.job_id, job.fields);
  });
}

std::string JobText(const JobRecord& job, absl::Time now, const Style& style) {
  std::string out = absl::StrCat(Paint("job ", kBold, style), job.job_id, "  ",
                                 PaintStatus(job.Get("status"), style));
  if (!job.Get("reason").empty()) absl::StrAppend(&out, "  ", job.Get("reason"));
  out += "\n";
  const auto row = [&](absl::string_view label, absl::string_view value) {
    if (value.empty()) return;
    absl::StrAppend(&out, absl::StrFormat("  %-9s %s\n", label, value));
  };
  row("repo", job.Get("repo"));
  row("branch", job.Get("branch"));
  row("commit", job.Get("commit"));
  std::string attempt(job.Get("attempt"));
  if (!job.Get("consumer").empty()) {
    absl::StrAppend(&attempt, " on ", job.Get("consumer"));
  }
  row("attempt", attempt);
  row("enqueued", When(job.Get("enqueued_at"), now));
  row("started", When(job.Get("started_at"), now));
  if (job.Get("status") == "running") {
    row("heartbeat", When(job.Get("lease_renewed_at"), now));
  }
  row("requeued", When(job.Get("requeued_at"), now));
  row("finished", When(job.Get("finished_at"), now));
  if (auto d = MillisField(job, "duration_ms")) row("took", FormatElapsed(*d));
  row("redriven", job.Get("redriven_at").empty()
                      ? ""
                      : absl::StrCat(When(job.Get("redriven_at"), now),
                                     " from dead letter ",
                                     job.Get("redriven_from")));
  row("earlier", EarlierReasons(job.Get("earlier_reasons")));
  row("cancel", job.Get("cancel_requested").empty()
                    ? ""
                    : absl::StrCat("requested ", job.Get("cancel_requested"),
                                   job.Get("cancel_reason").empty() ? "" : ": ",
                                   job.Get("cancel_reason")));
  row("dead", job.Get("dead_letter_id").empty()
                  ? ""
                  : absl::StrCat("dead letter ", job.Get("dead_letter_id"),
                                 " (ci-queue dead list)"));
  row("tests", TestsLine(job));
  row("image", job.Get("image"));
  row("digest", job.Get("image_digest"));
  row("cache", CacheLine(job.Get("cache")));
  if (std::string steps = StepsTable(job.Get("steps"), style); !steps.empty()) {
    absl::StrAppend(&out, Paint("steps", kBold, style), "\n");
    for (absl::string_view line :
         absl::StrSplit(steps, '\n', absl::SkipEmpty())) {
      absl::StrAppend(&out, "  ", line, "\n");
    }
  }
  return out;
}

std::string JobJson(const JobRecord& job) {
  static constexpr absl::string_view kJsonFields[] = {
      "steps", "artifacts", "cache", "config", "failed_tests",
      "earlier_reasons"};
  JsonObjectBuilder object;
  object.Add("job_id", job.job_id);
  for (const auto& [name, value] : job.fields) {
    if (name == "job_id") continue;
    dom::parser parser;
    const bool json = std::find(std::begin(kJsonFields), std::end(kJsonFields),
                                name) != std::end(kJsonFields) &&
                      ParseJsonField(parser, value).has_value();
    if (json) {
      object.AddRaw(name, value);
    } else {
      object.Add(name, value);
    }
  }
  return std::move(object).Build();
}

std::string LogLineText(const LogEntry& entry, int previous_attempt,
                        const Style& style) {
  std::string out;
  if (entry.attempt != previous_attempt &&
      !(previous_attempt == 0 && entry.attempt <= 1)) {
    out = Paint(absl::StrCat("--- attempt ", entry.attempt, " ---"), kBold,
                style) + "\n";
  }
  const std::string step = absl::StrFormat("%-6s", entry.step);
  absl::StrAppend(&out, Paint(step, kDim, style), " ",
                  entry.stream == "agent" ? Paint(entry.line, kCyan, style)
                                          : entry.line,
                  "\n");
  return out;
}

std::string LogLineJson(const LogEntry& entry) {
  JsonObjectBuilder object;
  object.Add("id", entry.id)
      .Add("seq", entry.seq)
      .Add("attempt", entry.attempt)
      .Add("step", entry.step)
      .Add("stream", entry.stream)
      .Add("line", entry.line);
  return std::move(object).Build();
}

std::string DeadLettersText(const std::vector<DeadLetter>& letters,
                            absl::Time now, const Style& style) {
  if (letters.empty()) return "no dead letters\n";
  TextTable table({"ID", "DEAD", "JOB", "DELIVERIES", "REASON"});
  for (const DeadLetter& letter : letters) {
    std::string dead;
    if (auto t = ParseTimestamp(letter.Get("dead_at"))) dead = FormatAgo(*t, now);
    table.AddRow({letter.id, dead, letter.job_id,
                  std::string(letter.Get("dead_deliveries")),
                  Shorten(letter.Get("dead_reason"), kReasonWidth)});
  }
  return table.Render(style);
}

std::string DeadLettersJson(const std::vector<DeadLetter>& letters) {
  return JsonArray(letters, [](const DeadLetter& letter) {
    return FieldsJson("id", letter.id, letter.fields);
  });
}

std::string RedriveText(const std::vector<RedriveResult>& results,
                        const Style& style) {
  if (results.empty()) return "no dead letters\n";
  TextTable table({"ID", "OUTCOME", "JOB", "DETAIL"});
  for (const RedriveResult& result : results) {
    const std::string outcome(OutcomeName(result.outcome));
    std::vector<std::string> cells = {
        result.dead_letter_id, outcome, result.job_id,
        result.outcome == RedriveOutcome::kRedriven
            ? absl::StrCat("new entry ", result.stream_id)
            : result.reason};
    std::vector<std::string> colored = cells;
    if (result.outcome == RedriveOutcome::kRedriven) {
      colored[1] = Paint(outcome, kGreen, style);
    } else if (result.outcome != RedriveOutcome::kWouldRedrive) {
      colored[1] = Paint(outcome, kRed, style);
    }
    table.AddRow(std::move(cells), std::move(colored));
  }
  return table.Render(style);
}

std::string RedriveJson(const std::vector<RedriveResult>& results) {
  return JsonArray(results, [](const RedriveResult& result) {
    JsonObjectBuilder object;
    object.Add("dead_letter_id", result.dead_letter_id)
        .Add("outcome", OutcomeName(result.outcome))
        .Add("job_id", result.job_id)
        .Add("stream_id", result.stream_id)
        .Add("reason", result.reason);
    return std::move(object).Build();
  });
}

std::string MakeJobId(absl::string_view repo, absl::Time now, uint16_t nonce) {
  absl::string_view name = absl::StripSuffix(
      absl::StripTrailingAsciiWhitespace(repo), "/");
  name = name.substr(name.rfind('/') == absl::string_view::npos
                         ? 0
                         : name.rfind('/') + 1);
  name = absl::StripSuffix(name, ".git");
  std::string id;
  for (char c : name.substr(0, 64)) {
    id.push_back(absl::ascii_isalnum(c) || c == '.' || c == '_' || c == '-'
                     ? c
                     : '-');
  }
  if (id.empty() || id == "." || id == "..") id = "job";
  return absl::StrCat(id, "-",
                      absl::FormatTime("%Y%m%d-%H%M%S", now, absl::UTCTimeZone()),
                      "-", absl::Hex(nonce, absl::kZeroPad4));
}

}  // namespace ciagent
