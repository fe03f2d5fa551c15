#include "ciagent/base/status_macros.h"

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace ciagent {
namespace {

using ::ciagent::testing::IsOkAndHolds;
using ::ciagent::testing::StatusIs;
using ::testing::Eq;
using ::testing::Pointee;

absl::Status ReturnIfErrorThenMark(absl::Status status, bool* reached_end) {
  CIAGENT_RETURN_IF_ERROR(status);
  *reached_end = true;
  return absl::OkStatus();
}

TEST(ReturnIfErrorTest, ReturnsErrorEarly) {
  bool reached_end = false;
  EXPECT_THAT(ReturnIfErrorThenMark(absl::NotFoundError("no such job"),
                                    &reached_end),
              StatusIs(absl::StatusCode::kNotFound, Eq("no such job")));
  EXPECT_FALSE(reached_end);
}

TEST(ReturnIfErrorTest, ContinuesOnOk) {
  bool reached_end = false;
  EXPECT_TRUE(ReturnIfErrorThenMark(absl::OkStatus(), &reached_end).ok());
  EXPECT_TRUE(reached_end);
}

TEST(ReturnIfErrorTest, EvaluatesExpressionOnce) {
  int calls = 0;
  const auto fails_once = [&]() -> absl::Status {
    ++calls;
    return absl::InternalError("boom");
  };
  const auto run = [&]() -> absl::Status {
    CIAGENT_RETURN_IF_ERROR(fails_once());
    return absl::OkStatus();
  };
  EXPECT_THAT(run(), StatusIs(absl::StatusCode::kInternal));
  EXPECT_EQ(calls, 1);
}

TEST(ReturnIfErrorTest, WorksInFunctionReturningStatusOr) {
  const auto run = [](absl::Status status) -> absl::StatusOr<int> {
    CIAGENT_RETURN_IF_ERROR(status);
    return 7;
  };
  EXPECT_THAT(run(absl::AbortedError("lost lease")),
              StatusIs(absl::StatusCode::kAborted));
  EXPECT_THAT(run(absl::OkStatus()), IsOkAndHolds(7));
}

absl::StatusOr<int> Half(int n) {
  if (n % 2 != 0) return absl::InvalidArgumentError("odd");
  return n / 2;
}

absl::StatusOr<int> Quarter(int n) {
  CIAGENT_ASSIGN_OR_RETURN(int half, Half(n));
  CIAGENT_ASSIGN_OR_RETURN(int quarter, Half(half));  // a second use in scope
  return quarter;
}

TEST(AssignOrReturnTest, DeclaresAndAssignsValues) {
  EXPECT_THAT(Quarter(12), IsOkAndHolds(3));
}

TEST(AssignOrReturnTest, ReturnsErrorOfFirstFailure) {
  EXPECT_THAT(Quarter(7), StatusIs(absl::StatusCode::kInvalidArgument, Eq("odd")));
  EXPECT_THAT(Quarter(6), StatusIs(absl::StatusCode::kInvalidArgument, Eq("odd")));
}

TEST(AssignOrReturnTest, AssignsToExistingVariable) {
  const auto run = [](int n) -> absl::StatusOr<std::string> {
    int half = -1;
    CIAGENT_ASSIGN_OR_RETURN(half, Half(n));
    return std::to_string(half);
  };
  EXPECT_THAT(run(8), IsOkAndHolds(std::string("4")));
  EXPECT_THAT(run(9), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(AssignOrReturnTest, LeavesExistingVariableUntouchedOnError) {
  int half = -1;
  const auto run = [&](int n) -> absl::Status {
    CIAGENT_ASSIGN_OR_RETURN(half, Half(n));
    return absl::OkStatus();
  };
  EXPECT_THAT(run(9), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(half, -1);
}

TEST(AssignOrReturnTest, MovesMoveOnlyValues) {
  const auto make = []() -> absl::StatusOr<std::unique_ptr<int>> {
    return std::make_unique<int>(42);
  };
  const auto run = [&]() -> absl::StatusOr<std::unique_ptr<int>> {
    CIAGENT_ASSIGN_OR_RETURN(std::unique_ptr<int> value, make());
    return value;
  };
  EXPECT_THAT(run(), IsOkAndHolds(Pointee(42)));
}

TEST(AnnotateTest, PrefixesMessageAndKeepsCode) {
  const absl::Status annotated =
      Annotate(absl::UnavailableError("connection refused"), "XREADGROUP ci-jobs");
  EXPECT_THAT(annotated, StatusIs(absl::StatusCode::kUnavailable,
                                  Eq("XREADGROUP ci-jobs: connection refused")));
}

TEST(AnnotateTest, KeepsPayloads) {
  absl::Status status = absl::AbortedError("lease lost");
  status.SetPayload("type.example/stream_id", absl::Cord("1-0"));
  const absl::Status annotated = Annotate(status, "finalize");
  EXPECT_EQ(annotated.message(), "finalize: lease lost");
  const auto payload = annotated.GetPayload("type.example/stream_id");
  ASSERT_TRUE(payload.has_value());
  EXPECT_EQ(std::string(*payload), "1-0");
}

TEST(AnnotateTest, LeavesOkStatusOk) {
  EXPECT_TRUE(Annotate(absl::OkStatus(), "anything").ok());
}

struct TransientCase {
  absl::StatusCode code;
  bool transient;
};

class IsTransientTest : public ::testing::TestWithParam<TransientCase> {};

TEST_P(IsTransientTest, MatchesErrorConvention) {
  const absl::Status status(GetParam().code, "message");
  EXPECT_EQ(IsTransient(status), GetParam().transient)
      << absl::StatusCodeToString(GetParam().code);
}

INSTANTIATE_TEST_SUITE_P(
    AllCodes, IsTransientTest,
    ::testing::Values(
        TransientCase{absl::StatusCode::kOk, false},
        TransientCase{absl::StatusCode::kCancelled, false},
        TransientCase{absl::StatusCode::kUnknown, false},
        TransientCase{absl::StatusCode::kInvalidArgument, false},
        TransientCase{absl::StatusCode::kDeadlineExceeded, true},
        TransientCase{absl::StatusCode::kNotFound, false},
        TransientCase{absl::StatusCode::kAlreadyExists, false},
        TransientCase{absl::StatusCode::kPermissionDenied, false},
        TransientCase{absl::StatusCode::kResourceExhausted, true},
        TransientCase{absl::StatusCode::kFailedPrecondition, false},
        TransientCase{absl::StatusCode::kAborted, false},
        TransientCase{absl::StatusCode::kOutOfRange, false},
        TransientCase{absl::StatusCode::kUnimplemented, false},
        TransientCase{absl::StatusCode::kInternal, false},
        TransientCase{absl::StatusCode::kUnavailable, true},
        TransientCase{absl::StatusCode::kDataLoss, false},
        TransientCase{absl::StatusCode::kUnauthenticated, false}),
    [](const ::testing::TestParamInfo<TransientCase>& info) {
      return absl::StrReplaceAll(absl::StatusCodeToString(info.param.code),
                                 {{"_", ""}});
    });

}  // namespace
}  // namespace ciagent
