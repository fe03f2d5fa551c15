#include "ciagent/base/secret_masker.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace ciagent {

SecretMasker::SecretMasker(absl::Span<const std::string> secrets) {
  for (const std::string& secret : secrets) {
    for (absl::string_view piece : absl::StrSplit(secret, '\n')) {
      if (absl::EndsWith(piece, "\r")) piece.remove_suffix(1);
      if (piece.empty()) continue;
      if (piece.size() < kMinSecretLength) {
        ++ignored_;
        continue;
      }
      patterns_.emplace_back(piece);
    }
  }
  std::sort(patterns_.begin(), patterns_.end());
  patterns_.erase(std::unique(patterns_.begin(), patterns_.end()),
                  patterns_.end());
}

std::string SecretMasker::Mask(absl::string_view text) const {
  // Every occurrence of every secret, overlapping ones included: the union
  // of their bytes is what must disappear. Replacing secrets one after the
  // other instead would depend on their order and could leave the tail of a
  // longer secret behind when a shorter one is its prefix.
  std::vector<std::pair<size_t, size_t>> hits;
  for (const std::string& pattern : patterns_) {
    for (size_t pos = text.find(pattern); pos != absl::string_view::npos;
         pos = text.find(pattern, pos + 1)) {
      hits.emplace_back(pos, pos + pattern.size());
    }
  }
  if (hits.empty()) return std::string(text);
  std::sort(hits.begin(), hits.end());
  std::string out;
  out.reserve(text.size());
  size_t copied = 0;
  for (size_t i = 0; i < hits.size();) {
    const size_t begin = hits[i].first;
    size_t end = hits[i].second;
    for (++i; i < hits.size() && hits[i].first < end; ++i) {
      end = std::max(end, hits[i].second);
    }
    absl::StrAppend(&out, text.substr(copied, begin - copied), kMask);
    copied = end;
  }
  absl::StrAppend(&out, text.substr(copied));
  return out;
}

}  // namespace ciagent
