// SecretMasker: replaces the values of a job's secret variables with
// "[MASKED]" in its build output, one line at a time.
//
// Pure logic, a value type: built once from the secret values, then Mask()
// is called for every output line (LogShipper does so before a line is
// queued for Redis).
//
// Rules:
//   - Every byte covered by an occurrence of any secret is hidden. Where
//     occurrences overlap (two secrets, one a prefix of the other, or
//     "abcd" and "cdef" in "abcdef"), the union of their bytes becomes one
//     "[MASKED]", so the longest secret is hidden whole and no tail of it is
//     left readable. Occurrences that merely touch each become a "[MASKED]".
//   - Secrets shorter than kMinSecretLength (4) bytes, and the empty
//     string, are ignored: masking every "a" or "123" would garble ordinary
//     output and, by where the mask shows up, give the value away anyway.
//     ignored() counts them so the caller can warn; such a value is not
//     protected and should be refused where secrets are configured. This is
//     the same threshold as RegisterSecret() in base/log.h.
//   - A secret that spans several lines (a PEM key, a kubeconfig) can never
//     occur within one output line, so it is split at '\n' (a trailing '\r'
//     is dropped) and each piece is masked on its own, subject to the length
//     rule above.
//
// Limits (documented, not solved):
//   - Matching is per line and exact. A secret that a program prints split
//     over two lines (wrapped at the terminal width, or printed in two
//     writes with a newline between) or transformed (base64, URL-encoded,
//     quoted with escapes) is not recognised.
//   - The mask hides the value, not its length or position.
//
// Example:
//   SecretMasker masker({"hunter2-token", "hunter2"});
//   masker.Mask("login hunter2-token ok");  // "login [MASKED] ok"
//
// Thread-safety: const methods may be called from any number of threads.
#ifndef CIAGENT_BASE_SECRET_MASKER_H_
#define CIAGENT_BASE_SECRET_MASKER_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace ciagent {

class SecretMasker {
 public:
  static constexpr size_t kMinSecretLength = 4;
  static constexpr absl::string_view kMask = "[MASKED]";

  // Masks nothing.
  SecretMasker() = default;
  explicit SecretMasker(absl::Span<const std::string> secrets);

  // `text` with every secret hidden (see the rules above).
  std::string Mask(absl::string_view text) const;

  // Distinct values that are matched (multi-line secrets count once per
  // piece).
  size_t size() const { return patterns_.size(); }
  bool empty() const { return patterns_.empty(); }
  // Secrets, or pieces of multi-line secrets, that are not matched because
  // they are shorter than kMinSecretLength (empty pieces are not counted:
  // they come from blank lines, not from a short value).
  size_t ignored() const { return ignored_; }

 private:
  std::vector<std::string> patterns_;
  size_t ignored_ = 0;
};

}  // namespace ciagent

#endif  // CIAGENT_BASE_SECRET_MASKER_H_
