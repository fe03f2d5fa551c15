#include "ciagent/pipeline/internal/result_limits.h"

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace ciagent {

int64_t SaturatingAdd(int64_t a, int64_t b) {
  constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();
  return a > kInt64Max - b ? kInt64Max : a + b;
}

absl::string_view CutUtf8(absl::string_view s, size_t max) {
  if (s.size() <= max) return s;
  size_t cut = max;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  return s.substr(0, cut);
}

void AppendCapped(absl::string_view s, size_t max, std::string* out) {
  if (out->size() >= max) return;
  absl::StrAppend(out, CutUtf8(s, max - out->size()));
}

absl::string_view TrimBlankLines(absl::string_view text) {
  while (!text.empty() && text.front() == '\n') text.remove_prefix(1);
  while (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  return text;
}

}  // namespace ciagent
