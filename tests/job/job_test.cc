// Specification of the job model: what ParseJob accepts, what it rejects and
// with which message, the canonical JSON form, and ExtractJobId.
#include "ciagent/job/job.h"

#include <ostream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ciagent/base/json_writer.h"
#include "ciagent/job/job_status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace ciagent {

// Failure messages show a Job as its JSON.
void PrintTo(const Job& job, std::ostream* os) { *os << JobToJson(job); }

namespace {

using ::ciagent::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Optional;
using ::testing::Pair;
using ::testing::SizeIs;
using ::testing::StartsWith;

constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;
constexpr char kSha1[] = "0123456789abcdef0123456789abcdef01234567";
constexpr char kSha256[] =
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

// JSON string literal holding `n` copies of `c`.
std::string JsonRepeat(size_t n, char c = 'a') {
  return absl::StrCat("\"", std::string(n, c), "\"");
}

// A minimal valid job document with member `key` set to the raw JSON
// `value`: a required member is replaced, any other one appended.
std::string JobJsonWith(absl::string_view key, absl::string_view value) {
  std::vector<std::pair<std::string, std::string>> members = {
      {"job_id", "\"push-1\""},
      {"repo", "\"https://git.example.com/acme/app.git\""},
      {"branch", "\"main\""},
      {"commit", absl::StrCat("\"", kSha1, "\"")},
  };
  bool replaced = false;
  for (auto& [k, v] : members) {
    if (k == key) {
      v = std::string(value);
      replaced = true;
    }
  }
  if (!replaced) members.emplace_back(key, value);
  return absl::StrCat("{",
                      absl::StrJoin(members, ",",
                                    [](std::string* out, const auto& m) {
                                      absl::StrAppend(out, "\"", m.first,
                                                      "\":", m.second);
                                    }),
                      "}");
}

std::string MinimalJobJson() { return JobJsonWith("job_id", "\"push-1\""); }

constexpr char kFullJobJson[] = R"({
  "job_id": "push-1234",
  "repo": "https://git.example.com:8443/acme/app.git",
  "branch": "feature/faster-builds",
  "commit": "0123456789ABCDEF0123456789abcdef01234567",
  "timeout_s": 1800,
  "steps": ["check", "test", "image"],
  "image": {"name": "acme/app", "tag": "v1.2"},
  "env": {"RUST_LOG": "debug", "RUST_BACKTRACE": "1"}
})";

Job FullJob() {
  Job job;
  job.job_id = "push-1234";
  job.repo = "https://git.example.com:8443/acme/app.git";
  job.branch = "feature/faster-builds";
  job.commit = kSha1;
  job.timeout = absl::Seconds(1800);
  job.steps = {"check", "test", "image"};
  job.image = ImageSpec{"acme/app", "v1.2"};
  job.env = {{"RUST_LOG", "debug"}, {"RUST_BACKTRACE", "1"}};
  return job;
}

Job MinimalJob() {
  Job job;
  job.job_id = "push-1";
  job.repo = "https://git.example.com/acme/app.git";
  job.branch = "main";
  job.commit = kSha1;
  return job;
}

// ---------------------------------------------------------------------------
// Accepting.

TEST(ParseJobTest, ParsesFullJobWithEveryOptionalField) {
  ASSERT_OK_AND_ASSIGN(Job job, ParseJob(kFullJobJson));
  EXPECT_EQ(job.job_id, "push-1234");
  EXPECT_EQ(job.repo, "https://git.example.com:8443/acme/app.git");
  EXPECT_EQ(job.branch, "feature/faster-builds");
  EXPECT_EQ(job.commit, kSha1);
  EXPECT_EQ(job.timeout, absl::Seconds(1800));
  EXPECT_THAT(job.steps, ElementsAre("check", "test", "image"));
  ASSERT_TRUE(job.image.has_value());
  EXPECT_EQ(job.image->name, "acme/app");
  EXPECT_EQ(job.image->tag, "v1.2");
  EXPECT_THAT(job.env, ElementsAre(Pair("RUST_LOG", "debug"),
                                   Pair("RUST_BACKTRACE", "1")));
  EXPECT_EQ(job, FullJob());
}

TEST(ParseJobTest, LeavesOptionalFieldsUnsetWhenAbsent) {
  ASSERT_OK_AND_ASSIGN(Job job, ParseJob(MinimalJobJson()));
  EXPECT_EQ(job.timeout, std::nullopt);
  EXPECT_THAT(job.steps, SizeIs(0));
  EXPECT_EQ(job.image, std::nullopt);
  EXPECT_THAT(job.env, SizeIs(0));
  EXPECT_EQ(job, MinimalJob());
}

TEST(ParseJobTest, NormalizesUppercaseCommitToLowercase) {
  ASSERT_OK_AND_ASSIGN(
      Job job,
      ParseJob(JobJsonWith("commit", absl::StrCat("\"", kSha256, "\""))));
  EXPECT_EQ(job.commit, kSha256);
  ASSERT_OK_AND_ASSIGN(
      job, ParseJob(JobJsonWith(
               "commit", "\"ABCDEF0123456789ABCDEF0123456789ABCDEF01\"")));
  EXPECT_EQ(job.commit, "abcdef0123456789abcdef0123456789abcdef01");
}

TEST(ParseJobTest, IgnoresUnknownFieldsOfAnyType) {
  const std::string json = R"({"future": {"nested": [1, {"x": null}]},
    "job_id": "push-1", "priority": 3, "labels": ["a", "b"], "draft": false,
    "repo": "https://git.example.com/acme/app.git", "note": null,
    "branch": "main", "ratio": -1.5e3, "commit": ")" +
                           std::string(kSha1) + R"(", "timeout": "ignored"})";
  ASSERT_OK_AND_ASSIGN(Job job, ParseJob(json));
  EXPECT_EQ(job, MinimalJob());
}

TEST(ParseJobTest, IgnoresUnknownKeysInsideImage) {
  ASSERT_OK_AND_ASSIGN(
      Job job,
      ParseJob(JobJsonWith(
          "image", R"({"registry": 5, "name": "acme/app", "digest": null})")));
  EXPECT_EQ(job.image, (ImageSpec{"acme/app", ""}));
}

TEST(ParseJobTest, KeepsEnvInDocumentOrder) {
  ASSERT_OK_AND_ASSIGN(
      Job job,
      ParseJob(JobJsonWith("env", R"({"Z": "1", "A": "2", "M": ""})")));
  EXPECT_THAT(job.env,
              ElementsAre(Pair("Z", "1"), Pair("A", "2"), Pair("M", "")));
}

TEST(ParseJobTest, AcceptsFileUrlOnlyWhenAllowed) {
  const std::string json = JobJsonWith("repo", R"("file:///srv/git/app.git")");
  EXPECT_THAT(ParseJob(json),
              StatusIs(kInvalid, AllOf(StartsWith("repo: scheme must be"),
                                       HasSubstr("allow_file_urls"))));
  ASSERT_OK_AND_ASSIGN(
      Job job, ParseJob(json, JobParseOptions{.allow_file_urls = true}));
  EXPECT_EQ(job.repo, "file:///srv/git/app.git");
}

TEST(ParseJobTest, ParsesSmallDocumentAfterLargeOneOnSameThread) {
  // The thread's parser grows for the large document, then starts afresh.
  const JobParseOptions large{.max_json_bytes = 4 * 1024 * 1024};
  ASSERT_OK(
      ParseJob(JobJsonWith("padding", JsonRepeat(2 * 1024 * 1024)), large));
  ASSERT_OK_AND_ASSIGN(Job job, ParseJob(MinimalJobJson()));
  EXPECT_EQ(job, MinimalJob());
}

TEST(ParseJobTest, ParsesConcurrentlyFromManyThreads) {
  std::vector<std::thread> threads;
  std::vector<int> failures(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t, &failures] {
      const std::string id = absl::StrCat("job-", t);
      const std::string json =
          JobJsonWith("job_id", absl::StrCat("\"", id, "\""));
      for (int i = 0; i < 2000; ++i) {
        absl::StatusOr<Job> job = ParseJob(json);
        if (!job.ok() || job->job_id != id) ++failures[t];
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_THAT(failures, ElementsAre(0, 0, 0, 0));
}

// Field values at the edge of what each rule allows.
struct Accepted {
  std::string name;
  std::string key;
  std::string value;  // raw JSON
};

void PrintTo(const Accepted& c, std::ostream* os) { *os << c.name; }

class ParseJobAcceptsTest : public ::testing::TestWithParam<Accepted> {};

TEST_P(ParseJobAcceptsTest, AcceptsValue) {
  EXPECT_OK(ParseJob(JobJsonWith(GetParam().key, GetParam().value)));
}

std::vector<Accepted> AcceptedCases() {
  return {
      {"JobIdOf128Bytes", "job_id", JsonRepeat(128)},
      {"JobIdWithEveryAllowedCharacter", "job_id", R"("aZ09._-")"},
      {"JobIdThreeDots", "job_id", R"("...")"},
      {"HttpRepo", "repo", R"("http://git.local/app.git")"},
      {"RepoWithPort", "repo", R"("https://git.local:65535/app.git")"},
      {"RepoWithIpv6Host", "repo", R"("https://[fd00::1]:3000/a/b.git")"},
      {"RepoWithUnderscoreHost", "repo", R"("http://git_server/app.git")"},
      {"RepoWithAtInPath", "repo", R"("https://git.local/team@x/app.git")"},
      {"RepoWithoutPath", "repo", R"("https://git.local")"},
      {"RepoOf2048Bytes", "repo",
       absl::StrCat("\"https://h/", std::string(2048 - 10, 'a'), "\"")},
      // Cases libcurl's URL parser knows: what it reads as written is kept.
      {"RepoWithPercentEncodedPath", "repo",
       R"("https://git.local/acme/my%20app%2Bx.git")"},
      {"RepoWithPunycodeHost", "repo", R"("https://xn--gt-zia.local/app.git")"},
      {"RepoWithUppercaseHost", "repo", R"("https://GIT.Local/app.git")"},
      {"RepoWithIpv4Host", "repo", R"("http://192.0.2.10:3000/app.git")"},
      {"RepoWithIpv4MappedIpv6Host", "repo",
       R"("https://[::ffff:192.0.2.10]/app.git")"},
      {"RepoWithUppercaseIpv6Host", "repo", R"("https://[FD00::A]/app.git")"},
      {"RepoWithZeroPaddedPort", "repo", R"("https://git.local:00443/a.git")"},
      {"BranchWithSlashes", "branch", R"("feature/a/b")"},
      {"BranchOf255Bytes", "branch", JsonRepeat(255)},
      {"BranchWithUnicode", "branch", R"("fix/\u00fcmlaut")"},
      {"BranchWithAtNotFollowedByBrace", "branch", R"("a@b")"},
      {"BranchWithLockInMiddle", "branch", R"("a.lock.b")"},
      {"BranchWithDotInside", "branch", R"("v1.2/x.y")"},
      {"Sha256Commit", "commit", absl::StrCat("\"", kSha256, "\"")},
      {"ShortestTimeout", "timeout_s", "1"},
      {"LongestTimeout", "timeout_s", "86400"},
      {"EveryKnownStep", "steps",
       R"(["check","build","test","clippy","audit","image"])"},
      {"EmptySteps", "steps", "[]"},
      {"ImageNameWithEverySeparator", "image",
       R"({"name": "a.b_c__d-e---f/g0/h", "tag": "_A.b-9"})"},
      {"ImageNameOf255Bytes", "image",
       absl::StrCat(R"({"name": )", JsonRepeat(255), "}")},
      {"ImageTagOf128Bytes", "image",
       absl::StrCat(R"({"name": "a", "tag": )", JsonRepeat(128), "}")},
      {"EmptyEnv", "env", "{}"},
      {"EnvNameOf128Bytes", "env",
       absl::StrCat("{", JsonRepeat(128, 'A'), ": \"x\"}")},
      {"EnvNameWithUnderscoreAndDigits", "env", R"({"_A1_b2": "x"})"},
      {"EnvNameContainingLd", "env", R"({"OLD_LD_PATH": "x", "LDX": "y"})"},
      {"EnvValueOf4096Bytes", "env",
       absl::StrCat("{\"A\":", JsonRepeat(4096), "}")},
      {"EnvValueWithControlCharacters", "env", R"({"A": "a\nb\tc\u0001"})"},
  };
}

INSTANTIATE_TEST_SUITE_P(EdgeValues, ParseJobAcceptsTest,
                         ::testing::ValuesIn(AcceptedCases()),
                         [](const ::testing::TestParamInfo<Accepted>& info) {
                           return info.param.name;
                         });

TEST(ParseJobTest, AcceptsAtMost128EnvEntries) {
  std::vector<std::string> entries;
  for (int i = 0; i < 128; ++i)
    entries.push_back(absl::StrCat("\"V", i, "\":\"x\""));
  const std::string env = absl::StrCat("{", absl::StrJoin(entries, ","), "}");
  ASSERT_OK_AND_ASSIGN(Job job, ParseJob(JobJsonWith("env", env)));
  EXPECT_THAT(job.env, SizeIs(128));
  entries.push_back("\"V128\":\"x\"");
  EXPECT_THAT(
      ParseJob(JobJsonWith(
          "env", absl::StrCat("{", absl::StrJoin(entries, ","), "}"))),
      StatusIs(kInvalid, StartsWith("env: must have at most 128 entries")));
}

// ---------------------------------------------------------------------------
// Rejecting: the document as a whole.

TEST(ParseJobTest, RejectsDocumentOverSizeLimitBeforeParsing) {
  const JobParseOptions options{.max_json_bytes = 16};
  EXPECT_THAT(ParseJob(MinimalJobJson(), options),
              StatusIs(kInvalid, StartsWith("job: document is")));
  // Not even a JSON error: the size is checked first.
  EXPECT_THAT(ParseJob("not json at all, and long", options),
              StatusIs(kInvalid, HasSubstr("the limit is 16")));
  EXPECT_THAT(ParseJob(JobJsonWith("padding", JsonRepeat(64 * 1024))),
              StatusIs(kInvalid, StartsWith("job: document is")));
}

TEST(ParseJobTest, RejectsInvalidJson) {
  for (absl::string_view json :
       {"", "   ", "{", "{\"job_id\":", "{\"job_id\" \"a\"}", "{'job_id': 'a'}",
        "{\"a\":1,}", "{\"a\":[1,}", "{\"a\":tru}", "{\"a\":01}", "{} {}",
        "{}}", "{\"a\":\"\x01\"}", "{\"a\":\"\\x\"}",
        "{\"a\":99999999999999999999999}"}) {
    EXPECT_THAT(ParseJob(json),
                StatusIs(kInvalid, StartsWith("job: invalid JSON (")))
        << json;
  }
}

TEST(ParseJobTest, RejectsMalformedJsonEvenInsideUnknownFields) {
  const std::string json = MinimalJobJson();
  const std::string broken =
      absl::StrCat(json.substr(0, json.size() - 1), ",\"extra\":[1 2]}");
  EXPECT_THAT(ParseJob(broken),
              StatusIs(kInvalid, StartsWith("job: invalid JSON")));
}

TEST(ParseJobTest, RejectsDocumentThatIsNotAnObject) {
  for (absl::string_view json : {"[]", "\"job\"", "42", "null", "true"}) {
    EXPECT_THAT(ParseJob(json),
                StatusIs(kInvalid, StartsWith("job: must be a JSON object")))
        << json;
  }
}

// ---------------------------------------------------------------------------
// Rejecting: presence and type of each member.

class RequiredFieldTest : public ::testing::TestWithParam<const char*> {};

TEST_P(RequiredFieldTest, RejectsJobWithoutIt) {
  const std::string field = GetParam();
  std::string json = "{";
  for (const char* other : {"job_id", "repo", "branch", "commit"}) {
    if (other == field) continue;
    if (json.size() > 1) json += ",";
    // Values valid for any field are hard to share; pick per field.
    const std::string value = other == std::string("repo") ? "\"https://h/x\""
                              : other == std::string("commit")
                                  ? absl::StrCat("\"", kSha1, "\"")
                                  : "\"main\"";
    absl::StrAppend(&json, "\"", other, "\":", value);
  }
  json += "}";
  EXPECT_THAT(ParseJob(json),
              StatusIs(kInvalid, absl::StrCat(field, ": is required")));
}

TEST_P(RequiredFieldTest, RejectsValueThatIsNotAString) {
  const std::string field = GetParam();
  for (absl::string_view value : {"1", "null", "true", "[]", "{}"}) {
    EXPECT_THAT(ParseJob(JobJsonWith(field, value)),
                StatusIs(kInvalid, StartsWith(absl::StrCat(
                                       field, ": must be a string (got "))))
        << value;
  }
}

INSTANTIATE_TEST_SUITE_P(EachRequiredField, RequiredFieldTest,
                         ::testing::Values("job_id", "repo", "branch",
                                           "commit"));

class KnownFieldTest
    : public ::testing::TestWithParam<std::pair<const char*, const char*>> {};

TEST_P(KnownFieldTest, RejectsFieldAppearingTwice) {
  const auto [field, value] = GetParam();
  std::string json = JobJsonWith(field, value);
  json.pop_back();
  absl::StrAppend(&json, ",\"", field, "\":", value, "}");
  EXPECT_THAT(
      ParseJob(json),
      StatusIs(kInvalid, absl::StrCat(field, ": appears more than once")));
}

INSTANTIATE_TEST_SUITE_P(
    EachKnownField, KnownFieldTest,
    ::testing::Values(
        std::pair("job_id", "\"a\""), std::pair("repo", "\"https://h/x\""),
        std::pair("branch", "\"main\""),
        std::pair("commit", "\"0123456789abcdef0123456789abcdef01234567\""),
        std::pair("timeout_s", "60"), std::pair("steps", "[]"),
        std::pair("image", "{\"name\":\"a\"}"), std::pair("env", "{}")));

TEST(ParseJobTest, RejectsDuplicateSpelledWithEscapes) {
  std::string json = MinimalJobJson();
  json.pop_back();
  json += R"(,"job\u005fid":"other"})";
  EXPECT_THAT(ParseJob(json),
              StatusIs(kInvalid, "job_id: appears more than once"));
}

// ---------------------------------------------------------------------------
// Rejecting: the rule of each field.

struct Rejected {
  std::string name;
  std::string key;
  std::string value;    // raw JSON
  std::string message;  // expected prefix of the status message
};

void PrintTo(const Rejected& c, std::ostream* os) { *os << c.name; }

class ParseJobRejectsTest : public ::testing::TestWithParam<Rejected> {};

TEST_P(ParseJobRejectsTest, RejectsWithMessageNamingField) {
  EXPECT_THAT(ParseJob(JobJsonWith(GetParam().key, GetParam().value)),
              StatusIs(kInvalid, StartsWith(GetParam().message)));
}

constexpr char kJobIdRule[] = "job_id: must match ^[A-Za-z0-9._-]{1,128}$";
constexpr char kBranchChars[] =
    "branch: must not contain space or any of ~^:?*[\\";
constexpr char kCommitRule[] = "commit: must be 40 or 64 hex digits";
constexpr char kTimeoutRule[] = "timeout_s: must be an integer in 1..86400";
constexpr char kImageNameRule[] =
    "image.name: must be at most 255 bytes matching";
constexpr char kImageTagRule[] =
    "image.tag: must match ^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$";
constexpr char kEnvNameRule[] =
    "env: names must match ^[A-Za-z_][A-Za-z0-9_]{0,127}$";

std::vector<Rejected> RejectedCases() {
  return {
      // job_id
      {"JobIdWithPathTraversal", "job_id", R"("../x")",
       R"(job_id: must match ^[A-Za-z0-9._-]{1,128}$ (got "../x"))"},
      {"JobIdDot", "job_id", R"(".")", R"(job_id: must not be "." or "..")"},
      {"JobIdDotDot", "job_id", R"("..")",
       R"(job_id: must not be "." or "..")"},
      {"EmptyJobId", "job_id", R"("")", kJobIdRule},
      {"JobIdOf129Bytes", "job_id", JsonRepeat(129), kJobIdRule},
      {"JobIdWithSlash", "job_id", R"("a/b")", kJobIdRule},
      {"JobIdWithShellMetacharacters", "job_id", R"json("a;$(id)")json",
       kJobIdRule},
      {"JobIdWithNul", "job_id", R"("a\u0000")", kJobIdRule},
      {"JobIdWithNonAscii", "job_id", R"("j\u00f6b")", kJobIdRule},
      // repo
      {"RepoWithFtpScheme", "repo", R"("ftp://git.local/app.git")",
       R"(repo: scheme must be https:// or http:// (got "ftp"))"},
      {"RepoWithUppercaseScheme", "repo", R"("HTTPS://git.local/app.git")",
       R"(repo: scheme must be https:// or http:// (got "HTTPS"))"},
      {"RepoInScpSyntax", "repo", R"("git@git.local:acme/app.git")",
       "repo: scheme must be https:// or http:// (got no scheme)"},
      {"RepoWithSshScheme", "repo", R"("ssh://git.local/app.git")",
       "repo: scheme must be"},
      {"RelativeRepoPath", "repo", R"("../app.git")", "repo: scheme must be"},
      {"RepoWithEmptyHost", "repo", R"("https:///app.git")",
       "repo: host must not be empty"},
      {"RepoWithOnlyPort", "repo", R"("https://:443/app.git")",
       "repo: host must not be empty"},
      {"RepoWithUserinfo", "repo", R"("https://user@git.local/app.git")",
       "repo: must not embed credentials"},
      {"RepoWithSpace", "repo", R"("https://git.local/a pp.git")",
       "repo: must not contain whitespace or control characters (byte 0x20 at "
       "offset 19)"},
      {"RepoWithNewline", "repo", R"("https://git.local/app.git\n")",
       "repo: must not contain whitespace or control characters"},
      {"RepoWithDel", "repo", R"("https://git.local/\u007f")",
       "repo: must not contain whitespace or control characters"},
      {"RepoWithBackslash", "repo", R"("https://git.local\\evil/app.git")",
       "repo: must not contain '\\'"},
      {"RepoWithFragment", "repo", R"("https://git.local/app.git#main")",
       "repo: must not contain a fragment"},
      {"RepoWithQuery", "repo", R"("https://git.local/app.git?ref=main")",
       "repo: must not contain a query"},
      {"RepoWithNonAsciiHost", "repo", R"("https://g\u00eft.local/app.git")",
       "repo: must be ASCII"},
      {"RepoWithPercentInHost", "repo", R"("https://git%2elocal/app.git")",
       "repo: host must contain only [A-Za-z0-9._-]"},
      {"RepoWithNamedPort", "repo", R"("https://git.local:https/app.git")",
       "repo: port must be a number in 1..65535"},
      {"RepoWithPortZero", "repo", R"("https://git.local:0/app.git")",
       "repo: port must be a number in 1..65535"},
      {"RepoWithPortAbove65535", "repo", R"("https://git.local:65536/a.git")",
       "repo: port must be a number in 1..65535"},
      {"RepoWithEmptyPort", "repo", R"("https://git.local:/app.git")",
       "repo: port must be a number in 1..65535"},
      {"RepoWithUnclosedIpv6", "repo", R"("https://[fd00::1/app.git")",
       "repo: IPv6 host must end with ']'"},
      {"RepoWithJunkAfterIpv6", "repo", R"("https://[fd00::1]x/app.git")",
       "repo: IPv6 host must be followed by ':' and a port"},
      // Cases libcurl's URL parser knows better than a character class, or
      // reads differently from how they are written.
      {"RepoWithInvalidIpv6", "repo", R"("https://[fd00::1::2]/app.git")",
       "repo: IPv6 host must be a valid IPv6 address"},
      {"RepoWithOneGroupIpv6", "repo", R"("https://[1]/app.git")",
       "repo: IPv6 host must be a valid IPv6 address"},
      {"RepoWithEmptyIpv6", "repo", R"("https://[]/app.git")",
       "repo: IPv6 host must be a valid IPv6 address"},
      {"RepoWithIpv6ZoneId", "repo", R"("https://[fe80::1%25eth0]/a.git")",
       "repo: IPv6 host must not have a zone id"},
      {"RepoWithUnencodedIpv6ZoneId", "repo",
       R"("https://[fe80::1%eth0]:3000/a.git")",
       "repo: IPv6 host must not have a zone id"},
      {"RepoWithIpv6AndEmptyPort", "repo", R"("https://[fd00::1]:/app.git")",
       "repo: port must be a number in 1..65535"},
      {"RepoWithShortIpv4", "repo", R"("https://127.1/app.git")",
       "repo: IPv4 host must be written as four decimal numbers (a.b.c.d)"},
      {"RepoWithOctalIpv4", "repo", R"("https://0177.0.0.1/app.git")",
       "repo: IPv4 host must be written as four decimal numbers"},
      {"RepoWithIntegerIpv4", "repo", R"("http://2130706433/app.git")",
       "repo: IPv4 host must be written as four decimal numbers"},
      {"RepoWithPercentEncodedUnicodeHost", "repo",
       R"("https://g%C3%AFt.local/app.git")",
       "repo: host must contain only [A-Za-z0-9._-]"},
      {"RepoWithTildeInHost", "repo", R"("https://git~x.local/app.git")",
       "repo: host must contain only [A-Za-z0-9._-]"},
      {"RepoWithPercentEncodedNul", "repo", R"("https://git.local/a%00.git")",
       "repo: path must not percent-encode control characters (%00-%1F)"},
      {"RepoWithPercentEncodedNewline", "repo",
       R"("https://git.local/a%0A/b.git")",
       "repo: path must not percent-encode control characters"},
      {"RepoWithSixDigitPort", "repo", R"("https://git.local:000443/a.git")",
       "repo: port must be a number in 1..65535"},
      {"RepoWithZeroPaddedPortZero", "repo", R"("https://git.local:00000/a")",
       "repo: port must be a number in 1..65535"},
      {"RepoWithOneSlashAfterScheme", "repo", R"("https:/git.local/app.git")",
       "repo: scheme must be https:// or http:// (got no scheme)"},
      {"RepoWithThreeSlashesAfterScheme", "repo", R"("https:///app.git")",
       "repo: host must not be empty"},
      {"RepoWithFourSlashesAfterScheme", "repo", R"("https:////h/app.git")",
       "repo: host must not be empty"},
      {"RepoWithEmptyFragment", "repo", R"("https://git.local/app.git#")",
       "repo: must not contain a fragment"},
      {"RepoWithEmptyQuery", "repo", R"("https://git.local/app.git?")",
       "repo: must not contain a query"},
      {"RepoOf2049Bytes", "repo",
       absl::StrCat("\"https://h/", std::string(2049 - 10, 'a'), "\""),
       "repo: must be at most 2048 bytes (got 2049)"},
      // branch
      {"BranchWithShellCommand", "branch", R"("main;rm -rf /")", kBranchChars},
      {"BranchWithNewline", "branch", R"("main\nx")",
       "branch: must not contain control characters"},
      {"BranchWithTab", "branch", R"("a\tb")",
       "branch: must not contain control characters"},
      {"BranchWithNul", "branch", R"("a\u0000b")",
       "branch: must not contain control characters"},
      {"BranchWithDel", "branch", R"("a\u007fb")",
       "branch: must not contain control characters"},
      {"BranchWithTilde", "branch", R"("main~1")", kBranchChars},
      {"BranchWithCaret", "branch", R"("main^")", kBranchChars},
      {"BranchWithColon", "branch", R"("a:b")", kBranchChars},
      {"BranchWithQuestionMark", "branch", R"("a?")", kBranchChars},
      {"BranchWithStar", "branch", R"("a*")", kBranchChars},
      {"BranchWithBracket", "branch", R"("a[1]")", kBranchChars},
      {"BranchWithBackslash", "branch", R"("a\\b")", kBranchChars},
      {"BranchWithDotDot", "branch", R"("a..b")",
       R"(branch: must not contain "..")"},
      {"BranchWithAtBrace", "branch", R"("main@{1}")",
       R"(branch: must not contain "@{")"},
      {"BranchAt", "branch", R"("@")", R"(branch: must not be "@" or "HEAD")"},
      {"BranchHead", "branch", R"("HEAD")",
       R"(branch: must not be "@" or "HEAD")"},
      {"BranchThatLooksLikeAnOption", "branch", R"("--upload-pack=x")",
       "branch: must not start with '-'"},
      {"BranchWithLeadingSlash", "branch", R"("/main")",
       "branch: must not start or end with '/'"},
      {"BranchWithTrailingSlash", "branch", R"("main/")",
       "branch: must not start or end with '/'"},
      {"BranchWithTrailingDot", "branch", R"("main.")",
       "branch: must not end with '.'"},
      {"BranchWithDoubleSlash", "branch", R"("a//b")",
       R"(branch: must not contain "//")"},
      {"BranchStartingWithDot", "branch", R"(".main")",
       "branch: must not have a path component starting with '.'"},
      {"BranchComponentStartingWithDot", "branch", R"("a/.b")",
       "branch: must not have a path component starting with '.'"},
      {"BranchEndingWithLock", "branch", R"("main.lock")",
       R"(branch: must not have a path component ending with ".lock")"},
      {"BranchComponentEndingWithLock", "branch", R"("a.lock/b")",
       R"(branch: must not have a path component ending with ".lock")"},
      {"EmptyBranch", "branch", R"("")", "branch: must not be empty"},
      {"BranchOf256Bytes", "branch", JsonRepeat(256),
       "branch: must be at most 255 bytes"},
      // commit
      {"CommitOf39Digits", "commit", JsonRepeat(39, 'a'), kCommitRule},
      {"CommitOf41Digits", "commit", JsonRepeat(41, 'a'), kCommitRule},
      {"CommitOf50Digits", "commit", JsonRepeat(50, 'a'), kCommitRule},
      {"CommitOf65Digits", "commit", JsonRepeat(65, 'a'), kCommitRule},
      {"CommitWithNonHexDigit", "commit", JsonRepeat(40, 'g'), kCommitRule},
      {"AbbreviatedCommit", "commit", R"("abc1234")",
       R"(commit: must be 40 or 64 hex digits (got "abc1234"))"},
      {"CommitRef", "commit", R"("HEAD")", kCommitRule},
      // timeout_s
      {"ZeroTimeout", "timeout_s", "0",
       "timeout_s: must be an integer in 1..86400 (got 0)"},
      {"NegativeTimeout", "timeout_s", "-5", kTimeoutRule},
      {"TimeoutOverOneDay", "timeout_s", "86401",
       "timeout_s: must be an integer in 1..86400 (got 86401)"},
      {"FractionalTimeout", "timeout_s", "1.5", kTimeoutRule},
      {"TimeoutWrittenAsFloat", "timeout_s", "60.0", kTimeoutRule},
      {"TimeoutWithExponent", "timeout_s", "1e30", kTimeoutRule},
      {"TimeoutAboveInt64", "timeout_s", "18446744073709551615", kTimeoutRule},
      {"TimeoutAsString", "timeout_s", R"("60")",
       "timeout_s: must be an integer in 1..86400 (got string)"},
      {"NullTimeout", "timeout_s", "null", kTimeoutRule},
      // test_retries
      {"NegativeTestRetries", "test_retries", "-1",
       "test_retries: must be an integer in 0..10 (got -1)"},
      {"TooManyTestRetries", "test_retries", "11",
       "test_retries: must be an integer in 0..10 (got 11)"},
      {"TestRetriesAsString", "test_retries", R"("2")",
       "test_retries: must be an integer in 0..10 (got string)"},
      {"FractionalTestRetries", "test_retries", "1.5",
       "test_retries: must be an integer in 0..10"},
      // steps
      {"StepsAsString", "steps", R"("test")",
       "steps: must be an array of strings (got string)"},
      {"UnknownStep", "steps", R"(["test", "deploy"])",
       R"(steps[1]: must be one of check, build, test, clippy, audit, image (got "deploy"))"},
      {"StepInWrongCase", "steps", R"(["Test"])", "steps[0]: must be one of"},
      {"StepThatIsNotAString", "steps", R"([1])",
       "steps[0]: must be a string (got number)"},
      {"RepeatedStep", "steps", R"(["test", "check", "test"])",
       R"(steps[2]: repeats "test")"},
      {"SeventeenSteps", "steps",
       absl::StrCat(
           "[", absl::StrJoin(std::vector<std::string>(17, "\"test\""), ","),
           "]"),
       "steps: must have at most 16 entries (got 17)"},
      // image
      {"ImageAsString", "image", R"("acme/app")",
       "image: must be an object (got string)"},
      {"ImageWithoutName", "image", R"({"tag": "v1"})",
       "image.name: is required"},
      {"ImageNameTwice", "image", R"({"name": "a", "name": "b"})",
       "image.name: appears more than once"},
      {"ImageNameNotAString", "image", R"({"name": 1})",
       "image.name: must be a string"},
      {"EmptyImageName", "image", R"({"name": ""})", kImageNameRule},
      {"ImageNameWithUppercase", "image", R"({"name": "Acme/app"})",
       kImageNameRule},
      {"ImageNameWithDoubleDot", "image", R"({"name": "a..b"})",
       kImageNameRule},
      {"ImageNameWithTripleUnderscore", "image", R"({"name": "a___b"})",
       kImageNameRule},
      {"ImageNameWithMixedSeparator", "image", R"({"name": "a.-b"})",
       kImageNameRule},
      {"ImageNameStartingWithSeparator", "image", R"({"name": "-a"})",
       kImageNameRule},
      {"ImageNameEndingWithSeparator", "image", R"({"name": "a_"})",
       kImageNameRule},
      {"ImageNameWithTrailingSlash", "image", R"({"name": "a/"})",
       kImageNameRule},
      {"ImageNameWithEmptyComponent", "image", R"({"name": "a//b"})",
       kImageNameRule},
      {"ImageNameWithTag", "image", R"({"name": "a:v1"})", kImageNameRule},
      {"ImageNameOf256Bytes", "image",
       absl::StrCat(R"({"name": )", JsonRepeat(256), "}"), kImageNameRule},
      {"EmptyImageTag", "image", R"({"name": "a", "tag": ""})", kImageTagRule},
      {"ImageTagStartingWithDash", "image", R"({"name": "a", "tag": "-v1"})",
       kImageTagRule},
      {"ImageTagStartingWithDot", "image", R"({"name": "a", "tag": ".v1"})",
       kImageTagRule},
      {"ImageTagWithSlash", "image", R"({"name": "a", "tag": "v1/x"})",
       kImageTagRule},
      {"ImageTagOf129Bytes", "image",
       absl::StrCat(R"({"name": "a", "tag": )", JsonRepeat(129), "}"),
       kImageTagRule},
      {"ImageTagNotAString", "image", R"({"name": "a", "tag": 1})",
       "image.tag: must be a string"},
      // env
      {"EnvAsArray", "env", R"(["A=1"])",
       "env: must be an object of strings (got array)"},
      {"EnvNameStartingWithDigit", "env", R"({"1A": "x"})", kEnvNameRule},
      {"EnvNameWithDash", "env", R"({"A-B": "x"})", kEnvNameRule},
      {"EnvNameWithEquals", "env", R"({"A=B": "x"})", kEnvNameRule},
      {"EmptyEnvName", "env", R"({"": "x"})", kEnvNameRule},
      {"EnvNameOf129Bytes", "env",
       absl::StrCat("{", JsonRepeat(129, 'A'), ": \"x\"}"), kEnvNameRule},
      {"EnvValueNotAString", "env", R"({"A": 1})",
       "env.A: must be a string (got number)"},
      {"EnvValueOf4097Bytes", "env",
       absl::StrCat("{\"A\":", JsonRepeat(4097), "}"),
       "env.A: value must be at most 4096 bytes (got 4097)"},
      {"EnvValueWithNul", "env", R"({"A": "a\u0000b"})",
       "env.A: value must not contain NUL"},
      {"EnvNameTwice", "env", R"({"A": "1", "B": "2", "A": "3"})",
       "env.A: appears more than once"},
  };
}

INSTANTIATE_TEST_SUITE_P(EachRule, ParseJobRejectsTest,
                         ::testing::ValuesIn(RejectedCases()),
                         [](const ::testing::TestParamInfo<Rejected>& info) {
                           return info.param.name;
                         });

class ReservedEnvTest : public ::testing::TestWithParam<const char*> {};

TEST_P(ReservedEnvTest, RejectsVariableTheAgentOwns) {
  const std::string name = GetParam();
  EXPECT_THAT(
      ParseJob(JobJsonWith("env", absl::StrCat("{\"", name, "\": \"x\"}"))),
      StatusIs(kInvalid,
               absl::StrCat("env.", name, ": reserved by the agent")));
}

INSTANTIATE_TEST_SUITE_P(
    EachReservedName, ReservedEnvTest,
    ::testing::Values("PATH", "HOME", "CARGO_HOME", "RUSTUP_HOME",
                      "CARGO_TARGET_DIR", "RUSTC_WRAPPER", "RUSTC", "CARGO",
                      "GIT_DIR", "GIT_TOKEN", "GITEA_TOKEN", "REGISTRY_TOKEN",
                      "REDIS_PASSWORD", "REDIS_URL", "CI_CACHE_DIR",
                      "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_", "GIT_SSH_COMMAND",
                      "GIT_ASKPASS", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_COUNT",
                      "RUSTC_WORKSPACE_WRAPPER", "CARGO_BUILD_RUSTC_WRAPPER",
                      "CARGO_REGISTRIES_ACME_TOKEN", "BASH_ENV", "ENV",
                      "CIAGENT_LOG_LEVEL"));

// ---------------------------------------------------------------------------
// Hostile input.

TEST(ParseJobTest, NeverEchoesCredentialsInRepoMessages) {
  for (absl::string_view url :
       {"https://user:s3cr3t@git.local/app.git",
        "https://s3cr3t@git.local/a.git",
        "http://oauth2:s3cr3t@git.local:3000/a.git",
        "https://user:s3cr3t@git.local/a b.git",
        "https://git.local/app.git?access_token=s3cr3t",
        "https://git.local/app.git#s3cr3t", "https://user:s3cr3t/app.git",
        "https://git.local/s3cr3t\\x", "git:s3cr3t@git.local:app.git",
        "ftp://user:s3cr3t@git.local/app.git", "https://s3cr3t\\@git.local/",
        "https://:s3cr3t@git.local/a.git", "https://;s3cr3t@git.local/a.git",
        "https://git.local:s3cr3t/a.git", "https://[fe80::1%25s3cr3t]/a.git",
        "https://s3cr3t%40git.local/a.git", "https://git.local/a%00s3cr3t"}) {
    const absl::StatusOr<Job> job =
        ParseJob(JobJsonWith("repo", JsonQuote(url)));
    EXPECT_THAT(job, StatusIs(kInvalid, AllOf(StartsWith("repo: "),
                                              Not(HasSubstr("s3cr3t")))))
        << url;
  }
}

TEST(ParseJobTest, RejectsEmbeddedCredentialsWithFixedMessage) {
  EXPECT_THAT(
      ParseJob(
          JobJsonWith("repo", R"("https://ci:glpat-XYZ@git.local/a.git")")),
      StatusIs(kInvalid,
               "repo: must not embed credentials (found '@' before the path)"));
}

TEST(ParseJobTest, RejectsShellCommandInBranchAndQuotesIt) {
  EXPECT_THAT(ParseJob(JobJsonWith("branch", R"("main;rm -rf /")")),
              StatusIs(kInvalid, HasSubstr(R"((got "main;rm -rf /"))")));
}

TEST(ParseJobTest, KeepsShellMetacharactersGitAllowsVerbatim) {
  // Valid git branch names; the agent passes branches as one argv element,
  // never through a shell, so they are data and must survive unchanged.
  for (absl::string_view branch : {"$(id)", "a;b", "`id`", "a|b&c>d", "'x'"}) {
    ASSERT_OK_AND_ASSIGN(Job job,
                         ParseJob(JobJsonWith("branch", JsonQuote(branch))));
    EXPECT_EQ(job.branch, branch);
  }
}

TEST(ParseJobTest, EscapesControlCharactersInMessages) {
  const absl::StatusOr<Job> job =
      ParseJob(JobJsonWith("branch", R"("main\nInjected: line\u001b[31m")"));
  EXPECT_THAT(job, StatusIs(kInvalid,
                            AllOf(HasSubstr(R"(main\nInjected)"),
                                  HasSubstr(R"(\u001b)"), Not(HasSubstr("\n")),
                                  Not(HasSubstr("\x1b")))));
}

TEST(ParseJobTest, TruncatesHugeOffendingValueInMessage) {
  const JobParseOptions options{.max_json_bytes = 2 * 1024 * 1024};
  const absl::StatusOr<Job> job =
      ParseJob(JobJsonWith("job_id", JsonRepeat(1024 * 1024, '/')), options);
  ASSERT_THAT(job, StatusIs(kInvalid, AllOf(StartsWith(kJobIdRule),
                                            HasSubstr("1048576 bytes)"))));
  EXPECT_LT(job.status().message().size(), 200u);
}

TEST(ParseJobTest, TruncatesMessagesOnUtf8CharacterBoundary) {
  // 63 ASCII bytes then a 2-byte character straddling the 64-byte cut.
  const std::string branch = absl::StrCat(std::string(63, 'a'), "\u00e9~");
  const absl::StatusOr<Job> job =
      ParseJob(JobJsonWith("branch", absl::StrCat("\"", branch, "\"")));
  EXPECT_THAT(
      job, StatusIs(kInvalid, AllOf(HasSubstr(absl::StrCat(
                                        "\"", std::string(63, 'a'), "\"...")),
                                    Not(HasSubstr("\xEF\xBF\xBD")))));
}

TEST(ParseJobTest, BoundsQuotedValueEvenWhenEveryByteNeedsEscaping) {
  // Each DEL is one byte in the value but six ("\u007f") once quoted; the
  // bound applies to the quoted text. Found by the fuzzer.
  std::string branch = "\"";
  for (int i = 0; i < 100; ++i) branch += "\\u007f";
  branch += "\"";
  const absl::StatusOr<Job> job = ParseJob(JobJsonWith("branch", branch));
  ASSERT_THAT(job, StatusIs(kInvalid, AllOf(StartsWith("branch: "),
                                            HasSubstr("... 100 bytes)"))));
  EXPECT_LT(job.status().message().size(), 150u);
}

TEST(ParseJobTest, RejectsBytesThatAreNotUtf8) {
  for (absl::string_view bad : {"\xff", "\xc3", "\xed\xa0\x80", "\xc0\xaf"}) {
    const std::string json =
        JobJsonWith("branch", absl::StrCat("\"main", bad, "\""));
    EXPECT_THAT(ParseJob(json),
                StatusIs(kInvalid, StartsWith("job: invalid JSON (")));
  }
}

TEST(ParseJobTest, RejectsLoneSurrogateEscapes) {
  EXPECT_THAT(ParseJob(JobJsonWith("branch", R"("a\ud800")")),
              StatusIs(kInvalid, StartsWith("job: invalid JSON (")));
  EXPECT_THAT(ParseJob(JobJsonWith("env", R"({"A": "\udc00"})")),
              StatusIs(kInvalid, StartsWith("job: invalid JSON (")));
}

TEST(ParseJobTest, SurvivesDeeplyNestedUnknownField) {
  const JobParseOptions options{.max_json_bytes = 1024 * 1024};
  const std::string deep =
      absl::StrCat(std::string(100000, '['), std::string(100000, ']'));
  EXPECT_THAT(ParseJob(JobJsonWith("x", deep), options),
              StatusIs(kInvalid, StartsWith("job: invalid JSON (")));
}

TEST(ParseJobTest, RejectsHugeEnvWithoutParsingEveryValue) {
  std::vector<std::string> entries;
  for (int i = 0; i < 5000; ++i)
    entries.push_back(absl::StrCat("\"V", i, "\":\"x\""));
  const JobParseOptions options{.max_json_bytes = 1024 * 1024};
  EXPECT_THAT(
      ParseJob(JobJsonWith("env",
                           absl::StrCat("{", absl::StrJoin(entries, ","), "}")),
               options),
      StatusIs(kInvalid, "env: must have at most 128 entries (got 5000)"));
}

// ---------------------------------------------------------------------------
// The canonical form.

TEST(JobToJsonTest, WritesFieldsInDocumentedOrder) {
  EXPECT_EQ(JobToJson(FullJob()),
            R"({"job_id":"push-1234",)"
            R"("repo":"https://git.example.com:8443/acme/app.git",)"
            R"("branch":"feature/faster-builds",)"
            R"("commit":"0123456789abcdef0123456789abcdef01234567",)"
            R"("timeout_s":1800,"steps":["check","test","image"],)"
            R"("image":{"name":"acme/app","tag":"v1.2"},)"
            R"("env":{"RUST_LOG":"debug","RUST_BACKTRACE":"1"}})");
}

TEST(JobToJsonTest, OmitsUnsetOptionalFields) {
  EXPECT_EQ(
      JobToJson(MinimalJob()),
      R"({"job_id":"push-1","repo":"https://git.example.com/acme/app.git",)"
      R"("branch":"main","commit":"0123456789abcdef0123456789abcdef01234567"})");
  Job job = MinimalJob();
  job.image = ImageSpec{"acme/app", ""};
  EXPECT_THAT(JobToJson(job), HasSubstr(R"("image":{"name":"acme/app"}})"));
}

TEST(JobToJsonTest, CanonicalizesParsedDocument) {
  ASSERT_OK_AND_ASSIGN(Job job, ParseJob(kFullJobJson));
  EXPECT_EQ(JobToJson(job), JobToJson(FullJob()));
}

struct RoundTrip {
  std::string name;
  Job job;
};

void PrintTo(const RoundTrip& c, std::ostream* os) { *os << c.name; }

class RoundTripTest : public ::testing::TestWithParam<RoundTrip> {};

TEST_P(RoundTripTest, ParsesBackToEqualJob) {
  const Job& job = GetParam().job;
  ASSERT_OK(ValidateJobId(job.job_id));
  EXPECT_THAT(ParseJob(JobToJson(job)), ::ciagent::testing::IsOkAndHolds(job));
}

std::vector<RoundTrip> RoundTripCases() {
  Job sha256 = MinimalJob();
  sha256.commit = kSha256;
  sha256.image = ImageSpec{"registry/acme/app", ""};
  sha256.timeout = absl::Seconds(kMaxJobTimeoutSeconds);
  sha256.test_retries = kMaxTestRetries;

  Job tricky_env = MinimalJob();
  tricky_env.env = {{"QUOTES", "say \"hi\" \\ bye"},
                    {"CONTROL", "line\nbreak\ttab\x01\x1f\x7f"},
                    {"UNICODE", "\u00fcml\u00e4ut \u2713 \U0001F980 \u2028"},
                    {"EMPTY", ""},
                    {"_x", std::string(4096, 'v')}};

  Job tricky_branch = MinimalJob();
  tricky_branch.branch = "feature/\u00fcmlaut-$(id);`x`";
  tricky_branch.job_id = std::string(128, '-');
  tricky_branch.steps = {"image", "audit", "clippy", "test", "build", "check"};
  tricky_branch.timeout = absl::Seconds(1);
  tricky_branch.test_retries = 0;

  return {{"Minimal", MinimalJob()},
          {"Full", FullJob()},
          {"Sha256CommitAndMaxTimeout", sha256},
          {"EnvWithCharactersNeedingEscapes", tricky_env},
          {"UnusualButValidBranchAndId", tricky_branch}};
}

INSTANTIATE_TEST_SUITE_P(Jobs, RoundTripTest,
                         ::testing::ValuesIn(RoundTripCases()),
                         [](const ::testing::TestParamInfo<RoundTrip>& info) {
                           return info.param.name;
                         });

// ---------------------------------------------------------------------------
// ExtractJobId.

TEST(ExtractJobIdTest, ReturnsIdOfJobThatFailsValidation) {
  const std::string json = JobJsonWith("repo", R"("ftp://x")");
  ASSERT_THAT(ParseJob(json), Not(::ciagent::testing::IsOk()));
  EXPECT_THAT(ExtractJobId(json), Optional(std::string("push-1")));
  EXPECT_THAT(ExtractJobId(R"({"job_id": "j-7", "steps": 5})"),
              Optional(std::string("j-7")));
}

TEST(ExtractJobIdTest, WorksOnDocumentsOverParseLimit) {
  const std::string json = JobJsonWith("padding", JsonRepeat(200 * 1024));
  ASSERT_THAT(ParseJob(json),
              StatusIs(kInvalid, StartsWith("job: document is")));
  EXPECT_THAT(ExtractJobId(json), Optional(std::string("push-1")));
}

TEST(ExtractJobIdTest, ReturnsNulloptWithoutUsableId) {
  const std::string over_limit =
      JobJsonWith("padding", JsonRepeat(1024 * 1024));
  const std::vector<absl::string_view> documents = {
      "",
      "null",
      "[\"job_id\"]",
      "\"job_id\"",
      "{}",
      R"({"job_id": 12})",
      R"({"job_id": null})",
      R"({"job_id": "../etc"})",
      R"({"job_id": ".."})",
      R"({"job_id": ""})",
      R"({"job_id": "a b"})",
      R"({"job_id": "ok", "job_id": "ok2"})",
      R"({"job_id": "ok")",
      R"({"job_id": "ok"} trailing)",
      "{\"job_id\": \"\xff\"}",
      R"({"nested": {"job_id": "inner"}})",
      over_limit};
  for (absl::string_view json : documents) {
    EXPECT_EQ(ExtractJobId(json), std::nullopt) << json.substr(0, 80);
  }
}

// ---------------------------------------------------------------------------
// The individual rules, as other modules call them.

TEST(ValidateTest, AcceptsWhatParseJobAccepts) {
  EXPECT_OK(ValidateJobId("push-1"));
  EXPECT_OK(ValidateRepoUrl("https://git.local/a.git", false));
  EXPECT_OK(ValidateRepoUrl("file:///srv/a.git", true));
  EXPECT_OK(ValidateRepoUrl("file://localhost/srv/a.git", true));
  EXPECT_OK(ValidateBranchName("release/1.x"));
  EXPECT_OK(ValidateCommit("ABCDEF0123456789ABCDEF0123456789ABCDEF01"));
}

TEST(ValidateTest, RejectsWithFieldNameFirst) {
  EXPECT_THAT(ValidateJobId("a/b"), StatusIs(kInvalid, StartsWith("job_id: ")));
  EXPECT_THAT(ValidateRepoUrl("file:///srv/a.git", false),
              StatusIs(kInvalid, StartsWith("repo: ")));
  EXPECT_THAT(ValidateBranchName("a b"),
              StatusIs(kInvalid, StartsWith("branch: ")));
  EXPECT_THAT(ValidateCommit("xyz"),
              StatusIs(kInvalid, StartsWith("commit: ")));
}

TEST(ValidateTest, RejectsFileUrlsWithHostOrWithoutPath) {
  EXPECT_THAT(
      ValidateRepoUrl("file://server/srv/a.git", true),
      StatusIs(kInvalid,
               StartsWith("repo: file:// URLs must have an empty host")));
  EXPECT_THAT(
      ValidateRepoUrl("file://", true),
      StatusIs(kInvalid, StartsWith("repo: file:// URLs must have a path")));
  EXPECT_THAT(
      ValidateRepoUrl("file:///", true),
      StatusIs(kInvalid, StartsWith("repo: file:// URLs must have a path")));
}

TEST(ValidateTest, RejectsBranchThatIsNotUtf8) {
  // JSON input is always UTF-8; a hand-built Job might not be.
  EXPECT_THAT(ValidateBranchName("main\xff"),
              StatusIs(kInvalid, StartsWith("branch: must be valid UTF-8")));
}

TEST(JobStatusTest, EveryStatusNameReadsBackAsItsStatus) {
  for (JobStatus status :
       {JobStatus::kQueued, JobStatus::kRunning, JobStatus::kSuccess,
        JobStatus::kFailed, JobStatus::kTimeout, JobStatus::kCancelled,
        JobStatus::kError}) {
    EXPECT_EQ(JobStatusFromName(JobStatusName(status)), status);
  }
  EXPECT_EQ(JobStatusFromName("Success"), std::nullopt);
  EXPECT_EQ(JobStatusFromName(""), std::nullopt);
}

}  // namespace
}  // namespace ciagent
