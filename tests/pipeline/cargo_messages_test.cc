// Specification of the reading of cargo's JSON messages, mostly from real
// cargo 1.95 output recorded in testdata/ (a two-package workspace: `app`
// with a lib, the bins `app` and `helper` and three lint warnings, `util`, and
// the registry crate `itoa`), and of the hashing of release artifacts.
#include "ciagent/pipeline/cargo_messages.h"

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/redis_server.h"
#include "testing/status_matchers.h"

namespace ciagent {
namespace {

using ::ciagent::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::EndsWith;
using ::testing::Field;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::StartsWith;

std::string ReadTestdata(absl::string_view name) {
  const char* dir = std::getenv("CIAGENT_PIPELINE_TESTDATA");
  EXPECT_NE(dir, nullptr) << "CIAGENT_PIPELINE_TESTDATA is not set";
  if (dir == nullptr) return "";
  std::ifstream in(absl::StrCat(dir, "/", name), std::ios::binary);
  EXPECT_TRUE(in) << "cannot open " << name;
  return std::string(std::istreambuf_iterator<char>(in),
                     std::istreambuf_iterator<char>());
}

// Feeds every line of a recorded stdout; expects each to be a cargo message.
void Feed(CargoMessageParser& parser, absl::string_view output) {
  for (absl::string_view line : absl::StrSplit(output, '\n')) {
    if (line.empty()) continue;
    EXPECT_TRUE(parser.AddLine(line)) << line;
  }
}

auto IsExecutable(absl::string_view name, absl::string_view path_suffix) {
  return AllOf(
      Field(&CargoExecutable::name, std::string(name)),
      Field(&CargoExecutable::path, EndsWith(std::string(path_suffix))));
}

// A compiler-message as rustc/cargo would write it, reduced to the fields
// that matter.
std::string Diagnostic(absl::string_view level, absl::string_view message,
                       bool spans, absl::string_view code = "null") {
  return absl::StrCat(
      R"({"reason":"compiler-message","package_id":"path+file:///src/app#0.1.0",)",
      R"("target":{"kind":["lib"],"name":"app"},"message":{"level":")", level,
      R"(","message":")", message, R"(","code":)", code, R"(,"spans":)",
      spans ? R"([{"file_name":"src/lib.rs","line_start":1}])" : "[]",
      R"(,"children":[],"rendered":")", level, ": ", message, R"(\n"}})");
}

std::string ArtifactLine(absl::string_view package_id, absl::string_view kind,
                         absl::string_view name, absl::string_view executable,
                         bool test = false) {
  return absl::StrCat(R"({"reason":"compiler-artifact","package_id":")",
                      package_id, R"(","target":{"kind":[")", kind,
                      R"("],"name":")", name, R"("},"profile":{"test":)",
                      test ? "true" : "false", R"(},"executable":)", executable,
                      R"(,"fresh":false})");
}

// ---------------------------------------------------------------------------
// `cargo build --release --message-format=json-render-diagnostics`

TEST(CargoMessageParserTest, FindsReleaseExecutablesOfWorkspaceBinTargets) {
  CargoMessageParser parser;
  Feed(parser, ReadTestdata("cargo_build_release.jsonl"));
  EXPECT_THAT(parser.executables(),
              ElementsAre(IsExecutable("app", "/target/release/app"),
                          IsExecutable("helper", "/target/release/helper")));
  EXPECT_TRUE(parser.finished());
  EXPECT_TRUE(parser.success());
}

TEST(CargoMessageParserTest, CountsUnitsAndDependencyUnitsOfAFirstBuild) {
  CargoMessageParser parser;
  Feed(parser, ReadTestdata("cargo_build_release.jsonl"));
  // util (lib), itoa (lib), app (lib), app and helper (bins).
  EXPECT_EQ(parser.units(), 5);
  EXPECT_EQ(parser.fresh_units(), 0);
  EXPECT_EQ(parser.dependency_units(), 1);  // itoa
  EXPECT_EQ(parser.fresh_dependency_units(), 0);
}

TEST(CargoMessageParserTest, CountsFreshUnitsOfANoOpRebuild) {
  CargoMessageParser parser;
  Feed(parser, ReadTestdata("cargo_build_release_fresh.jsonl"));
  EXPECT_EQ(parser.units(), 5);
  EXPECT_EQ(parser.fresh_units(), 5);
  EXPECT_EQ(parser.dependency_units(), 1);
  EXPECT_EQ(parser.fresh_dependency_units(), 1);
  // A fresh unit still names its executable.
  EXPECT_THAT(parser.executables(),
              ElementsAre(IsExecutable("helper", "/target/release/helper"),
                          IsExecutable("app", "/target/release/app")));
}

TEST(CargoMessageParserTest, DeduplicatesExecutablesByPath) {
  CargoMessageParser parser;
  Feed(parser, ReadTestdata("cargo_build_release.jsonl"));
  Feed(parser, ReadTestdata("cargo_build_release_fresh.jsonl"));
  EXPECT_THAT(parser.executables(),
              ElementsAre(IsExecutable("app", "/target/release/app"),
                          IsExecutable("helper", "/target/release/helper")));
  EXPECT_EQ(parser.units(), 10);
}

TEST(CargoMessageParserTest, IgnoresTestHarnessExecutablesOfBinTargets) {
  // `cargo test --release --no-run`: the bins' test harnesses have kind
  // "bin" and an executable in deps/, but are not release artifacts.
  CargoMessageParser parser;
  Feed(parser, ReadTestdata("cargo_test_no_run.jsonl"));
  EXPECT_THAT(parser.executables(), IsEmpty());
  EXPECT_TRUE(parser.success());
}

TEST(CargoMessageParserTest, IgnoresExecutablesOfDependenciesAndExamples) {
  CargoMessageParser parser;
  EXPECT_TRUE(parser.AddLine(ArtifactLine(
      "registry+https://github.com/rust-lang/crates.io-index#tool@1.0.0", "bin",
      "tool", R"("/src/target/release/tool")")));
  EXPECT_TRUE(parser.AddLine(
      ArtifactLine("git+https://git.example.com/acme/dep.git#4f2c", "bin",
                   "dep", R"("/src/target/release/dep")")));
  EXPECT_TRUE(parser.AddLine(
      ArtifactLine("path+file:///src/app#0.1.0", "example", "demo",
                   R"("/src/target/release/examples/demo")")));
  EXPECT_TRUE(parser.AddLine(
      ArtifactLine("path+file:///src/app#0.1.0", "lib", "app", "null")));
  EXPECT_THAT(parser.executables(), IsEmpty());
  EXPECT_EQ(parser.units(), 4);
  EXPECT_EQ(parser.dependency_units(), 2);
}

TEST(CargoMessageParserTest, AcceptsTheOlderPackageIdFormat) {
  CargoMessageParser parser;
  EXPECT_TRUE(
      parser.AddLine(ArtifactLine("app 0.1.0 (path+file:///src/app)", "bin",
                                  "app", R"("/src/target/release/app")")));
  EXPECT_TRUE(parser.AddLine(ArtifactLine(
      "tool 1.0.0 (registry+https://github.com/rust-lang/crates.io-index)",
      "bin", "tool", R"("/src/target/release/tool")")));
  EXPECT_THAT(parser.executables(),
              ElementsAre(IsExecutable("app", "/src/target/release/app")));
  EXPECT_EQ(parser.dependency_units(), 1);
}

TEST(CargoMessageParserTest, NamesAnExecutableAfterItsFileWhenTargetHasNoName) {
  CargoMessageParser parser;
  EXPECT_TRUE(parser.AddLine(ArtifactLine("path+file:///src/app#0.1.0", "bin",
                                          "", R"("/src/target/release/app")")));
  EXPECT_THAT(parser.executables(),
              ElementsAre(IsExecutable("app", "/src/target/release/app")));
}

// Found by the fuzzer: with no target name, a path ending in '/' would give
// an executable without a name.
TEST(CargoMessageParserTest, IgnoresAnUnnamedExecutablePathEndingInASlash) {
  CargoMessageParser parser;
  EXPECT_TRUE(parser.AddLine(ArtifactLine("path+file:///src/app#0.1.0", "bin",
                                          "", R"("/src/target/release/")")));
  EXPECT_THAT(parser.executables(), IsEmpty());
}

TEST(IsLocalPackageIdTest, RecognisesLocalPackagesInEveryCargoFormat) {
  EXPECT_TRUE(IsLocalPackageId("path+file:///src/app#0.1.0"));
  EXPECT_TRUE(IsLocalPackageId("path+file:///src/x#app@0.1.0"));
  EXPECT_TRUE(IsLocalPackageId("app 0.1.0 (path+file:///src/app)"));
  EXPECT_FALSE(IsLocalPackageId(
      "registry+https://github.com/rust-lang/crates.io-index#itoa@1.0.1"));
  EXPECT_FALSE(IsLocalPackageId(
      "itoa 1.0.1 (registry+https://github.com/rust-lang/crates.io-index)"));
  EXPECT_FALSE(IsLocalPackageId("git+https://example.com/dep.git#4f2c"));
  EXPECT_FALSE(IsLocalPackageId(""));
}

// ---------------------------------------------------------------------------
// Diagnostics.

TEST(CargoMessageParserTest, CountsClippyWarningsButNotTheirSummary) {
  CargoMessageParser parser;
  Feed(parser, ReadTestdata("cargo_clippy_warnings.jsonl"));
  EXPECT_EQ(parser.warnings(), 3);  // needless_return, ptr_arg, unused var
  EXPECT_EQ(parser.errors(), 0);
  // Summaries, as rustc writes them and as cargo prints its own: no spans,
  // no code. Cargo drops them from its JSON; they must not count if sent.
  EXPECT_TRUE(
      parser.AddLine(Diagnostic("warning", "2 warnings emitted", false)));
  EXPECT_TRUE(
      parser.AddLine(Diagnostic("warning", "1 warning emitted", false)));
  EXPECT_TRUE(parser.AddLine(Diagnostic(
      "warning", "`app` (lib) generated 2 warnings (run `cargo clippy --fix`)",
      false)));
  EXPECT_EQ(parser.warnings(), 3);
}

TEST(CargoMessageParserTest, RenderDiagnosticsFormatCarriesNoDiagnostics) {
  // With json-render-diagnostics the same warnings go to stderr, rendered:
  // stdout cannot count them.
  CargoMessageParser parser;
  Feed(parser, ReadTestdata("cargo_clippy_render_diagnostics.jsonl"));
  EXPECT_EQ(parser.warnings(), 0);
  EXPECT_EQ(parser.units(), 5);
  EXPECT_TRUE(parser.success());
}

TEST(CargoMessageParserTest, CountsDiagnosticsRepeatedForTestTargetsOnce) {
  // `cargo clippy --all-targets`: the lib and its test harness report the
  // same three warnings; cargo shows them once ("2 duplicates").
  CargoMessageParser parser;
  Feed(parser, ReadTestdata("cargo_clippy_all_targets.jsonl"));
  EXPECT_EQ(parser.warnings(), 3);
}

TEST(CargoMessageParserTest, CountsDiagnosticsAgainInTheNextCargoRun) {
  CargoMessageParser parser;
  Feed(parser, ReadTestdata("cargo_clippy_warnings.jsonl"));
  Feed(parser, ReadTestdata("cargo_clippy_warnings.jsonl"));
  EXPECT_EQ(parser.warnings(), 6);
}

TEST(CargoMessageParserTest, CountsCompileErrorsAndTheFailedBuild) {
  // Two errors (E0308, E0425) and two failure-notes, which are not errors.
  CargoMessageParser parser;
  Feed(parser, ReadTestdata("cargo_build_error.jsonl"));
  EXPECT_EQ(parser.errors(), 2);
  EXPECT_EQ(parser.warnings(), 0);
  EXPECT_TRUE(parser.finished());
  EXPECT_FALSE(parser.success());
  EXPECT_THAT(parser.executables(), IsEmpty());
}

TEST(CargoMessageParserTest, CountsErrorsWithoutSpansButNotTheAbortSummary) {
  CargoMessageParser parser;
  EXPECT_TRUE(parser.AddLine(
      Diagnostic("error", "linking with `cc` failed: exit status: 1", false)));
  EXPECT_TRUE(parser.AddLine(
      Diagnostic("error: internal compiler error", "unexpected panic", false)));
  EXPECT_TRUE(parser.AddLine(
      Diagnostic("error", "aborting due to 2 previous errors", false)));
  EXPECT_TRUE(parser.AddLine(Diagnostic("note", "see issue #1", false)));
  EXPECT_EQ(parser.errors(), 2);
  // A real warning that happens to read like a summary still counts.
  EXPECT_TRUE(parser.AddLine(Diagnostic("warning", "3 warnings emitted", true,
                                        R"({"code":"my_lint"})")));
  EXPECT_EQ(parser.warnings(), 1);
}

TEST(CargoMessageParserTest, HandsBackTheRenderedDiagnostic) {
  const std::string output = ReadTestdata("cargo_clippy_warnings.jsonl");
  std::vector<std::string> rendered;
  CargoMessageParser parser;
  for (absl::string_view line : absl::StrSplit(output, '\n')) {
    std::string text = "stale";
    if (line.empty()) continue;
    ASSERT_TRUE(parser.AddLine(line, &text));
    if (!text.empty()) rendered.push_back(text);
  }
  ASSERT_EQ(rendered.size(), 3u);
  EXPECT_THAT(rendered[0], StartsWith("warning: unneeded `return` statement\n"
                                      " --> app/src/lib.rs:4:5\n"));
  EXPECT_THAT(rendered[0], Not(EndsWith("\n")));
  EXPECT_THAT(rendered[2], StartsWith("warning: unused variable: `unused`"));
}

// ---------------------------------------------------------------------------
// Robustness.

TEST(CargoMessageParserTest, ReturnsFalseForLinesThatAreNotCargoMessages) {
  CargoMessageParser parser;
  std::string rendered = "stale";
  EXPECT_FALSE(parser.AddLine("", &rendered));
  EXPECT_EQ(rendered, "");
  EXPECT_FALSE(parser.AddLine("   Compiling app v0.1.0 (/src/app)"));
  EXPECT_FALSE(parser.AddLine("hello from build.rs"));
  EXPECT_FALSE(parser.AddLine("{not json"));
  EXPECT_FALSE(parser.AddLine("[1, 2, 3]"));
  EXPECT_FALSE(parser.AddLine(R"({"hello": "a build script printing JSON"})"));
  EXPECT_FALSE(parser.AddLine(R"({"reason": 42})"));
  EXPECT_FALSE(parser.AddLine(std::string("{\"reason\":\"x\"\0}", 15)));
  EXPECT_FALSE(parser.AddLine("\xff\xfe{\"reason\":\"build-finished\"}"));
  EXPECT_FALSE(parser.finished());
  // A message of a kind this parser does not use is still cargo's.
  EXPECT_TRUE(parser.AddLine(
      R"({"reason":"build-script-executed","package_id":"path+file:///src/app#0.1.0","linked_libs":[],"linked_paths":[],"cfgs":[],"env":[],"out_dir":"/src/target/release/build/app-1/out"})"));
  EXPECT_EQ(parser.units(), 0);
}

TEST(CargoMessageParserTest, AcceptsLinesWithTheirLineEndings) {
  CargoMessageParser parser;
  EXPECT_TRUE(
      parser.AddLine("{\"reason\":\"build-finished\",\"success\":true}\r\n"));
  EXPECT_TRUE(parser.finished());
  EXPECT_TRUE(parser.success());
  EXPECT_TRUE(
      parser.AddLine("{\"reason\":\"build-finished\",\"success\":false}\n"));
  EXPECT_FALSE(parser.success());
}

TEST(CargoMessageParserTest, SurvivesTruncatedMessagesAndHugeLines) {
  const std::string output = ReadTestdata("cargo_clippy_warnings.jsonl");
  CargoMessageParser parser;
  for (absl::string_view line : absl::StrSplit(output, '\n')) {
    for (size_t cut = 0; cut < line.size(); cut += 97) {
      parser.AddLine(line.substr(0, cut));
    }
  }
  EXPECT_EQ(parser.warnings(), 0);
  EXPECT_EQ(parser.units(), 0);

  // A 3 MiB diagnostic, then ordinary lines: the parser's buffers shrink
  // back and it goes on counting.
  std::string huge = Diagnostic("warning", std::string(3 << 20, 'x'), true);
  EXPECT_TRUE(parser.AddLine(huge));
  Feed(parser, output);
  EXPECT_EQ(parser.warnings(), 4);
  EXPECT_EQ(parser.units(), 5);
}

TEST(CargoMessageParserTest, StaysUsableAfterBeingMovedFrom) {
  CargoMessageParser first;
  Feed(first, ReadTestdata("cargo_build_release.jsonl"));
  CargoMessageParser second = std::move(first);
  EXPECT_EQ(second.executables().size(), 2u);
  first = CargoMessageParser();
  EXPECT_TRUE(
      first.AddLine("{\"reason\":\"build-finished\",\"success\":true}"));
}

// ---------------------------------------------------------------------------
// DescribeArtifact.

class DescribeArtifactTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(dir_,
                         ::ciagent::testing::MakeTempDir("ciagent-artifact-"));
  }
  void TearDown() override {
    if (!dir_.empty()) ::ciagent::testing::RemoveTree(dir_);
  }
  std::string Write(absl::string_view name, absl::string_view contents) {
    const std::string path = absl::StrCat(dir_, "/", name);
    std::ofstream(path, std::ios::binary)
        .write(contents.data(), static_cast<std::streamsize>(contents.size()));
    return path;
  }

  std::string dir_;
};

TEST_F(DescribeArtifactTest, GivesSizeAndSha256) {
  const std::string path = Write("app", "hello\n");
  ASSERT_OK_AND_ASSIGN(Artifact artifact, DescribeArtifact("app", path));
  EXPECT_EQ(artifact.name, "app");
  EXPECT_EQ(artifact.path, path);
  EXPECT_EQ(artifact.size_bytes, 6);
  EXPECT_EQ(artifact.sha256,
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03");
}

TEST_F(DescribeArtifactTest, HashesAnEmptyFile) {
  ASSERT_OK_AND_ASSIGN(Artifact artifact,
                       DescribeArtifact("empty", Write("empty", "")));
  EXPECT_EQ(artifact.size_bytes, 0);
  EXPECT_EQ(artifact.sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST_F(DescribeArtifactTest, HashesFilesLargerThanOneChunk) {
  std::string contents(3 * 1024 * 1024 + 7, '\0');
  for (size_t i = 0; i < contents.size(); ++i) {
    contents[i] = static_cast<char>(i % 251);
  }
  ASSERT_OK_AND_ASSIGN(Artifact artifact,
                       DescribeArtifact("big", Write("big", contents)));
  EXPECT_EQ(artifact.size_bytes, static_cast<int64_t>(contents.size()));
  EXPECT_EQ(artifact.sha256,
            "f578a61853ca2f4272dba551bd868420e22302fbb6d6dfc0cc80da1d2c7b779f");
}

TEST_F(DescribeArtifactTest, MissingFileIsNotFoundAndNamesIt) {
  const std::string path = dir_ + "/target/release/app";
  EXPECT_THAT(DescribeArtifact("app", path),
              StatusIs(absl::StatusCode::kNotFound,
                       AllOf(HasSubstr("app"), HasSubstr(path))));
}

TEST_F(DescribeArtifactTest, DirectoryIsNotAnArtifact) {
  EXPECT_THAT(DescribeArtifact("dir", dir_),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("not a regular file")));
}

}  // namespace
}  // namespace ciagent
