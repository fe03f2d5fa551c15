// libFuzzer target for the WWW-Authenticate parser: the header comes from
// any server the agent talks to. Beyond "no crash, no sanitizer report":
//   - an accepted header yields 1..16 challenges with lowercase schemes and
//     at most 32 parameters each;
//   - rejections are kInvalidArgument with a short message.
// Any violation calls abort() so the fuzzer records the input.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/string_view.h"
#include "ciagent/oci/www_authenticate.h"

namespace {

void Check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "www_authenticate_fuzzer: violated: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  auto challenges = ciagent::oci::ParseWwwAuthenticate(input);
  if (!challenges.ok()) {
    Check(challenges.status().code() == absl::StatusCode::kInvalidArgument,
          "rejections are kInvalidArgument");
    Check(challenges.status().message().size() < 600,
          "rejection messages are short");
    return 0;
  }
  Check(!challenges->empty() && challenges->size() <= 16,
        "1 to 16 challenges");
  for (const auto& challenge : *challenges) {
    Check(!challenge.scheme.empty(), "schemes are not empty");
    Check(absl::AsciiStrToLower(challenge.scheme) == challenge.scheme,
          "schemes are lowercase");
    Check(challenge.params.size() <= 32, "at most 32 parameters");
  }
  return 0;
}
