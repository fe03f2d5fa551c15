// GoogleTest matchers and assertions for absl::Status and absl::StatusOr.
//
//   EXPECT_OK(queue.Finalize(claim, outcome));
//   ASSERT_OK_AND_ASSIGN(Job job, ParseJob(json));
//   EXPECT_THAT(ParseJob("{}"), StatusIs(absl::StatusCode::kInvalidArgument,
//                                        HasSubstr("job_id")));
//   EXPECT_THAT(Lookup(), IsOkAndHolds(Eq(3)));
#ifndef CIAGENT_TESTS_TESTING_STATUS_MATCHERS_H_
#define CIAGENT_TESTS_TESTING_STATUS_MATCHERS_H_

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ciagent::testing {

inline const absl::Status& GetStatus(const absl::Status& status) {
  return status;
}
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

MATCHER(IsOk, "is OK") {
  const absl::Status& status = GetStatus(arg);
  *result_listener << "status is " << status.ToString();
  return status.ok();
}

MATCHER_P(StatusIs, code,
          "has code " + absl::StatusCodeToString(static_cast<absl::StatusCode>(code))) {
  const absl::Status& status = GetStatus(arg);
  *result_listener << "status is " << status.ToString();
  return status.code() == code;
}

MATCHER_P2(StatusIs, code, message_matcher,
           "has code " + absl::StatusCodeToString(static_cast<absl::StatusCode>(code))) {
  const absl::Status& status = GetStatus(arg);
  *result_listener << "status is " << status.ToString();
  return status.code() == code &&
         ::testing::ExplainMatchResult(message_matcher,
                                       std::string(status.message()),
                                       result_listener);
}

MATCHER_P(IsOkAndHolds, value_matcher, "is OK and holds a matching value") {
  if (!arg.ok()) {
    *result_listener << "status is " << arg.status().ToString();
    return false;
  }
  return ::testing::ExplainMatchResult(value_matcher, *arg, result_listener);
}

}  // namespace ciagent::testing

#define EXPECT_OK(expr) EXPECT_THAT((expr), ::ciagent::testing::IsOk())
#define ASSERT_OK(expr) ASSERT_THAT((expr), ::ciagent::testing::IsOk())

#define CIAGENT_TESTING_CONCAT_INNER_(a, b) a##b
#define CIAGENT_TESTING_CONCAT_(a, b) CIAGENT_TESTING_CONCAT_INNER_(a, b)
#define ASSERT_OK_AND_ASSIGN(lhs, expr)                                      \
  ASSERT_OK_AND_ASSIGN_IMPL_(                                                \
      CIAGENT_TESTING_CONCAT_(ciagent_statusor_, __LINE__), lhs, expr)
#define ASSERT_OK_AND_ASSIGN_IMPL_(statusor, lhs, expr)           \
  auto statusor = (expr);                                         \
  ASSERT_TRUE(statusor.ok()) << statusor.status().ToString();     \
  lhs = std::move(statusor).value()

#endif  // CIAGENT_TESTS_TESTING_STATUS_MATCHERS_H_
