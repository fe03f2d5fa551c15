// How the test-results parsers keep TestResults bounded and exact (see
// test_results.h): names and messages are cut on a UTF-8 character boundary,
// counts saturate instead of wrapping. Shared by the libtest parser and the
// JUnit reader and writer, so both runners' results are cut alike.
//
// Example:
//   test.name = std::string(CutUtf8(raw_name, kMaxTestNameBytes));
//   AppendCapped(line, kMaxTestMessageBytes, &test.message);
//   results.passed = SaturatingAdd(results.passed, 1);
#ifndef CIAGENT_PIPELINE_INTERNAL_RESULT_LIMITS_H_
#define CIAGENT_PIPELINE_INTERNAL_RESULT_LIMITS_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace ciagent {

// a + b for counts (b >= 0), INT64_MAX when that overflows.
int64_t SaturatingAdd(int64_t a, int64_t b);

// The longest prefix of `s` of at most `max` bytes that does not split a
// UTF-8 sequence (judged by continuation bytes only, so any bytes work).
absl::string_view CutUtf8(absl::string_view s, size_t max);

// Appends `s` to `*out` without letting `*out` grow beyond `max` bytes.
void AppendCapped(absl::string_view s, size_t max, std::string* out);

// `text` without its leading and trailing blank lines.
absl::string_view TrimBlankLines(absl::string_view text);

}  // namespace ciagent

#endif  // CIAGENT_PIPELINE_INTERNAL_RESULT_LIMITS_H_
