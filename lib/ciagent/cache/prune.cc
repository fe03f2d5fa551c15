// The policy and the report of pruning; the walk of the volume is in
// internal/cache_walk.h.
#include "ciagent/cache/prune.h"

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "ciagent/base/atomic_file.h"
#include "ciagent/base/json_writer.h"
#include "ciagent/base/log.h"
#include "ciagent/base/status_macros.h"
#include "ciagent/cache/internal/cache_walk.h"

namespace ciagent {
namespace {

void AppendItems(std::string* out,
                 const std::vector<PruneReport::Item>& items) {
  out->push_back('[');
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out->push_back(',');
    JsonObjectBuilder b;
    b.Add("path", items[i].path)
        .Add("reason", items[i].reason)
        .Add("bytes", items[i].bytes)
        .Add("last_use", FormatTimestamp(items[i].last_use));
    absl::StrAppend(out, std::move(b).Build());
  }
  out->push_back(']');
}

}  // namespace

PrunePlan MakePrunePlan(const std::vector<CacheEntry>& entries, absl::Time now,
                        const PrunePolicy& policy) {
  PrunePlan plan;
  std::vector<size_t> order(entries.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (entries[a].last_use != entries[b].last_use) {
      return entries[a].last_use < entries[b].last_use;
    }
    return entries[a].path < entries[b].path;
  });
  int64_t total = 0;
  for (const CacheEntry& e : entries) total += e.size_bytes;
  plan.total_before = total;
  std::vector<bool> decided(entries.size(), false);
  const auto choose = [&](size_t i, PruneReason reason) {
    decided[i] = true;
    if (entries[i].in_use) {
      plan.skipped_in_use.push_back({i, reason});
    } else {
      plan.remove.push_back({i, reason});
      total -= entries[i].size_bytes;
    }
  };
  for (size_t i : order) {
    if (now - entries[i].last_use > policy.max_age) {
      choose(i, PruneReason::kOlderThanMaxAge);
    }
  }
  for (size_t i : order) {
    if (total <= policy.max_size_bytes) break;
    if (!decided[i]) choose(i, PruneReason::kOverSizeCap);
  }
  plan.total_after = total;
  return plan;
}

std::string PruneReasonText(PruneReason reason, const PrunePolicy& policy) {
  switch (reason) {
    case PruneReason::kOlderThanMaxAge:
      return absl::StrCat("older than ", FormatPruneAge(policy.max_age));
    case PruneReason::kOverSizeCap:
      return "over size cap, least recently used";
  }
  return "";
}

absl::StatusOr<absl::Duration> ParsePruneAge(absl::string_view text) {
  const absl::Status bad = absl::InvalidArgumentError(absl::StrCat(
      "bad age \"", text, "\": want e.g. 36h, 7d, 1d12h (units s m h d w)"));
  if (text.empty()) return bad;
  absl::Duration total;
  absl::string_view rest = text;
  while (!rest.empty()) {
    int64_t n = 0;
    size_t digits = 0;
    while (digits < rest.size() && absl::ascii_isdigit(rest[digits])) {
      if (n > (std::numeric_limits<int64_t>::max() - 9) / 10) return bad;
      n = n * 10 + (rest[digits] - '0');
      ++digits;
    }
    if (digits == 0 || digits == rest.size()) return bad;
    absl::Duration unit;
    switch (rest[digits]) {
      case 's':
        unit = absl::Seconds(1);
        break;
      case 'm':
        unit = absl::Minutes(1);
        break;
      case 'h':
        unit = absl::Hours(1);
        break;
      case 'd':
        unit = absl::Hours(24);
        break;
      case 'w':
        unit = absl::Hours(24 * 7);
        break;
      default:
        return bad;
    }
    total += n * unit;
    if (total == absl::InfiniteDuration()) return bad;
    rest.remove_prefix(digits + 1);
  }
  if (total <= absl::ZeroDuration()) return bad;
  return total;
}

std::string FormatPruneAge(absl::Duration age) {
  const int64_t s = absl::ToInt64Seconds(age);
  if (s > 0 && s % 86400 == 0) return absl::StrCat(s / 86400, "d");
  if (s > 0 && s % 3600 == 0) return absl::StrCat(s / 3600, "h");
  if (s > 0 && s % 60 == 0) return absl::StrCat(s / 60, "m");
  return absl::StrCat(s, "s");
}

absl::StatusOr<int64_t> ParseByteSize(absl::string_view text) {
  const absl::Status bad = absl::InvalidArgumentError(absl::StrCat(
      "bad size \"", text,
      "\": want an integer with an optional suffix K M G T (1024-based), "
      "KiB..TiB (1024-based) or KB..TB (1000-based)"));
  size_t digits = 0;
  uint64_t n = 0;
  while (digits < text.size() && absl::ascii_isdigit(text[digits])) {
    if (n > (std::numeric_limits<uint64_t>::max() - 9) / 10) return bad;
    n = n * 10 + static_cast<uint64_t>(text[digits] - '0');
    ++digits;
  }
  if (digits == 0) return bad;
  const std::string suffix = absl::AsciiStrToLower(text.substr(digits));
  uint64_t unit = 1;
  if (!suffix.empty() && suffix != "b") {
    const size_t power = std::string("kmgt").find(suffix[0]);
    if (power == std::string::npos) return bad;
    const absl::string_view tail = absl::string_view(suffix).substr(1);
    uint64_t base;
    if (tail.empty() || tail == "ib") {
      base = 1024;
    } else if (tail == "b") {
      base = 1000;
    } else {
      return bad;
    }
    for (size_t i = 0; i <= power; ++i) unit *= base;
  }
  if (n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / unit) {
    return bad;
  }
  return static_cast<int64_t>(n * unit);
}

absl::StatusOr<std::vector<CacheEntry>> ScanCache(absl::string_view cache_dir,
                                                  int64_t* cargo_home_bytes,
                                                  int64_t* walk_errors,
                                                  int walk_threads) {
  CIAGENT_ASSIGN_OR_RETURN(CacheRoot root, OpenCacheRoot(cache_dir));
  return ScanCacheRoot(root, walk_threads, cargo_home_bytes, walk_errors);
}

absl::StatusOr<PruneReport> PruneCache(const PruneOptions& options) {
  const absl::Time start = options.clock->Now();
  PruneReport report;
  report.dry_run = options.dry_run;
  report.cache_dir = options.cache_dir;
  report.policy = options.policy;
  CIAGENT_ASSIGN_OR_RETURN(CacheRoot root, OpenCacheRoot(options.cache_dir));
  if (!options.dry_run) {
    report.trash_removed = CleanCacheTrash(root, &report.walk_errors);
  }
  CIAGENT_ASSIGN_OR_RETURN(
      std::vector<CacheEntry> entries,
      ScanCacheRoot(root, options.walk_threads, &report.cargo_home_bytes,
                    &report.walk_errors));
  report.entries_scanned = static_cast<int64_t>(entries.size());
  const PrunePlan plan =
      MakePrunePlan(entries, options.clock->Now(), options.policy);
  report.total_before = plan.total_before;
  const auto item = [&](const PlannedRemoval& r) {
    const CacheEntry& e = entries[r.entry];
    return PruneReport::Item{e.path, PruneReasonText(r.reason, options.policy),
                             e.size_bytes, e.last_use};
  };
  for (const PlannedRemoval& r : plan.skipped_in_use) {
    report.skipped_in_use.push_back(item(r));
  }
  for (const PlannedRemoval& r : plan.remove) {
    if (options.dry_run) {
      report.removed.push_back(item(r));
      report.bytes_freed += entries[r.entry].size_bytes;
      continue;
    }
    absl::StatusOr<RemoveOutcome> outcome =
        RemoveCacheEntry(root, entries[r.entry], &report.walk_errors);
    if (!outcome.ok()) {
      report.failed.push_back(
          {entries[r.entry].path, std::string(outcome.status().message())});
      LogWarning("cannot prune cache entry", {{"path", entries[r.entry].path},
                                              {"error", outcome.status()}});
    } else if (*outcome == RemoveOutcome::kInUse) {
      report.skipped_in_use.push_back(item(r));
    } else {
      report.removed.push_back(item(r));
      report.bytes_freed += entries[r.entry].size_bytes;
    }
  }
  report.total_after = report.total_before - report.bytes_freed;
  report.duration = options.clock->Now() - start;
  return report;
}

std::string PruneReportJson(const PruneReport& report) {
  std::string removed;
  AppendItems(&removed, report.removed);
  std::string skipped;
  AppendItems(&skipped, report.skipped_in_use);
  std::string failed = "[";
  for (size_t i = 0; i < report.failed.size(); ++i) {
    if (i > 0) failed.push_back(',');
    JsonObjectBuilder b;
    b.Add("path", report.failed[i].path).Add("error", report.failed[i].error);
    absl::StrAppend(&failed, std::move(b).Build());
  }
  failed.push_back(']');
  JsonObjectBuilder b;
  b.Add("cache_dir", report.cache_dir)
      .Add("dry_run", report.dry_run)
      .Add("max_age", FormatPruneAge(report.policy.max_age))
      .Add("max_size_bytes", report.policy.max_size_bytes)
      .Add("entries_scanned", report.entries_scanned)
      .AddRaw("removed", removed)
      .AddRaw("skipped_in_use", skipped)
      .AddRaw("failed", failed)
      .Add("bytes_freed", report.bytes_freed)
      .Add("total_before", report.total_before)
      .Add("total_after", report.total_after)
      .Add("cargo_home_bytes", report.cargo_home_bytes)
      .Add("trash_removed", report.trash_removed)
      .Add("walk_errors", report.walk_errors)
      .Add("duration_ms", absl::ToInt64Milliseconds(report.duration));
  return std::move(b).Build();
}

absl::Status TouchLastUseStamp(absl::string_view entry_dir) {
  std::error_code error;
  std::filesystem::create_directories(std::string(entry_dir), error);
  if (error) {
    return absl::FailedPreconditionError(
        absl::StrCat("create ", entry_dir, ": ", error.message()));
  }
  return WriteFileAtomically(
      absl::StrCat(entry_dir, "/", kPruneStampName),
      absl::StrCat(absl::FormatTime(absl::RFC3339_full, absl::Now(),
                                    absl::UTCTimeZone()),
                   "\n"));
}

}  // namespace ciagent
