#include "ciagent/queue/test_history.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "ciagent/base/sha256.h"
#include "ciagent/base/status_macros.h"

namespace ciagent {
namespace {

// KEYS[1]: the branch's history hash; KEYS[2]: the list of the latest run
// ids recorded there. ARGV: commit, max_outcomes, max_commits, ttl_seconds,
// max_tests, run id (may be empty), then name and outcome letter (P, F, K)
// of each test. Returns one {runs, failed, streak, both} per test. A run id
// already in KEYS[2] (a retried call whose first try went through) changes
// nothing: the histories are returned as they stand.
const RedisScript& RecordScript() {
  static const RedisScript* const script = new RedisScript(R"lua(
local key, runs_key, commit = KEYS[1], KEYS[2], ARGV[1]
local max_outcomes, max_commits = tonumber(ARGV[2]), tonumber(ARGV[3])
local ttl, max_tests, run_id = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local replay = run_id ~= '' and redis.call('LPOS', runs_key, run_id) ~= false
local seen, out = {}, {}
for i = 7, #ARGV - 1, 2 do
  local name, outcome = ARGV[i], ARGV[i + 1]
  seen[name] = true
  local outcomes, streak, commits = '', '-', {}
  local value = redis.call('HGET', key, name)
  if value then
    local parts = {}
    for part in string.gmatch(value, '%S+') do parts[#parts + 1] = part end
    outcomes, streak = parts[1] or '', parts[2] or '-'
    for j = 3, #parts do commits[#commits + 1] = parts[j] end
  end
  local bits = ({P = 1, F = 2, K = 3})[outcome] or 2
  if replay then
    for _, entry in ipairs(commits) do
      local c, b = string.match(entry, '^(.+):(%d)$')
      if c == commit then bits = tonumber(b) end
    end
  else
    local last = string.sub(outcomes, -1)
    outcomes = string.sub(outcomes .. outcome, -max_outcomes)
    if outcome == 'P' then
      streak = '-'
    elseif last == '' or last == 'P' then
      streak = commit
    end
    local kept = {}
    for _, entry in ipairs(commits) do
      local c, b = string.match(entry, '^(.+):(%d)$')
      if c == commit then
        bits = bit.bor(bits, tonumber(b))
      elseif c then
        kept[#kept + 1] = entry
      end
    end
    local list = {commit .. ':' .. bits}
    for j = 1, math.min(#kept, max_commits - 1) do list[#list + 1] = kept[j] end
    redis.call('HSET', key, name,
               outcomes .. ' ' .. streak .. ' ' .. table.concat(list, ' '))
  end
  local _, failed = string.gsub(outcomes, '[FK]', '')
  out[#out + 1] = {#outcomes, failed, streak, bits == 3 and 1 or 0}
end
if replay then return out end
if run_id ~= '' then
  redis.call('LPUSH', runs_key, run_id)
  redis.call('LTRIM', runs_key, 0, 99)
  if ttl > 0 then redis.call('EXPIRE', runs_key, ttl) end
end
if ttl > 0 then redis.call('EXPIRE', key, ttl) end
if redis.call('HLEN', key) > max_tests then
  for _, name in ipairs(redis.call('HKEYS', key)) do
    if not seen[name] then redis.call('HDEL', key, name) end
  end
end
return out
)lua");
  return *script;
}

char Letter(TestRun::Outcome outcome) {
  switch (outcome) {
    case TestRun::Outcome::kPassed: return 'P';
    case TestRun::Outcome::kFailed: return 'F';
    case TestRun::Outcome::kFlaky: return 'K';
  }
  return 'F';
}

std::string RepoKeyPart(absl::string_view repo,
                        const TestHistoryOptions& options) {
  return absl::StrCat(options.key_prefix, "{", TestHistoryRepoId(repo), "}");
}

}  // namespace

std::string TestHistoryRepoId(absl::string_view repo) {
  return Sha256Hex(repo).substr(0, 16);
}

std::string QuarantineKey(absl::string_view repo,
                          const TestHistoryOptions& options) {
  return absl::StrCat(RepoKeyPart(repo, options), ":quarantine");
}

std::string TestHistoryKey(absl::string_view repo, absl::string_view branch,
                           const TestHistoryOptions& options) {
  return absl::StrCat(RepoKeyPart(repo, options), ":history:", branch);
}

TestHistoryStore::TestHistoryStore(RedisOptions redis,
                                   TestHistoryOptions options)
    : redis_(std::move(redis)), options_(std::move(options)) {}

absl::StatusOr<std::vector<std::string>> TestHistoryStore::ReadQuarantine(
    absl::string_view repo) {
  if (repo.empty()) {
    return absl::InvalidArgumentError("read quarantine: no repository");
  }
  const std::string key = QuarantineKey(repo, options_);
  absl::StatusOr<RedisReply> reply = redis_.Command({"SMEMBERS", key});
  if (!reply.ok()) {
    return absl::UnavailableError(absl::StrCat(
        "read quarantine ", key, ": ", reply.status().message()));
  }
  std::vector<std::string> names;
  for (const RedisReply& element : reply->elements) {
    if (element.is_string()) names.push_back(element.str);
  }
  std::sort(names.begin(), names.end());
  return names;
}

absl::StatusOr<int64_t> TestHistoryStore::Quarantine(
    absl::string_view repo, absl::Span<const std::string> names) {
  return ChangeQuarantine("SADD", repo, names);
}

absl::StatusOr<int64_t> TestHistoryStore::Release(
    absl::string_view repo, absl::Span<const std::string> names) {
  return ChangeQuarantine("SREM", repo, names);
}

absl::StatusOr<int64_t> TestHistoryStore::ChangeQuarantine(
    absl::string_view command, absl::string_view repo,
    absl::Span<const std::string> names) {
  if (repo.empty() || names.empty()) {
    return absl::InvalidArgumentError(
        "quarantine: a repository and at least one test name are needed");
  }
  const std::string key = QuarantineKey(repo, options_);
  std::vector<std::string> argv = {std::string(command), key};
  argv.insert(argv.end(), names.begin(), names.end());
  absl::StatusOr<RedisReply> reply = redis_.Command(argv);
  if (!reply.ok()) {
    return absl::UnavailableError(absl::StrCat(
        "quarantine ", key, ": ", reply.status().message()));
  }
  return reply->integer;
}

absl::StatusOr<std::vector<TestHistoryRecord>> TestHistoryStore::Record(
    absl::string_view repo, absl::string_view branch,
    absl::string_view commit, absl::Span<const TestRun> runs,
    absl::string_view run_id) {
  if (repo.empty() || branch.empty() || commit.empty()) {
    return absl::InvalidArgumentError(
        "record test history: repository, branch and commit are required");
  }
  const std::string key = TestHistoryKey(repo, branch, options_);
  std::vector<std::string> args = {
      std::string(commit), absl::StrCat(options_.max_outcomes),
      absl::StrCat(options_.max_commits),
      absl::StrCat(absl::ToInt64Seconds(options_.ttl)),
      absl::StrCat(options_.max_tests), std::string(run_id)};
  for (const TestRun& run : runs) {
    args.push_back(run.name);
    args.emplace_back(1, Letter(run.outcome));
  }
  absl::StatusOr<RedisReply> reply =
      redis_.Eval(RecordScript(), {key, key + ":runs"}, args);
  if (!reply.ok()) {
    return Annotate(reply.status(), absl::StrCat("record test history ", key));
  }
  if (!reply->is_array() || reply->elements.size() != runs.size()) {
    return absl::UnavailableError(absl::StrCat(
        "record test history ", key, ": unexpected reply"));
  }
  std::vector<TestHistoryRecord> records;
  records.reserve(runs.size());
  for (size_t i = 0; i < runs.size(); ++i) {
    const RedisReply& item = reply->elements[i];
    if (!item.is_array() || item.elements.size() != 4) {
      return absl::UnavailableError(absl::StrCat(
          "record test history ", key, ": unexpected reply for ",
          runs[i].name));
    }
    TestHistoryRecord record;
    record.name = runs[i].name;
    record.runs = static_cast<int>(item.elements[0].integer);
    record.failed = static_cast<int>(item.elements[1].integer);
    if (item.elements[2].str != "-") record.failing_since = item.elements[2].str;
    record.passed_and_failed_on_commit = item.elements[3].integer == 1;
    records.push_back(std::move(record));
  }
  return records;
}

}  // namespace ciagent
