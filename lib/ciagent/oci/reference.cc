#include "ciagent/oci/reference.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace ciagent::oci {
namespace {

bool IsLowerAlnum(char c) {
  return absl::ascii_isdigit(static_cast<unsigned char>(c)) ||
         (c >= 'a' && c <= 'z');
}

// One path component: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
bool IsValidComponent(absl::string_view part) {
  if (part.empty() || !IsLowerAlnum(part.front()) ||
      !IsLowerAlnum(part.back())) {
    return false;
  }
  for (size_t i = 0; i < part.size(); ++i) {
    const char c = part[i];
    if (IsLowerAlnum(c)) continue;
    if (c == '.' || c == '_') {
      // One '.', one '_' or exactly "__" between alphanumerics.
      const bool double_underscore =
          c == '_' && i + 1 < part.size() && part[i + 1] == '_';
      if (double_underscore) ++i;
      if (!IsLowerAlnum(part[i + 1])) return false;
    } else if (c != '-') {
      return false;
    }
  }
  return true;
}

bool LooksLikeRegistry(absl::string_view component) {
  return absl::StrContains(component, '.') ||
         absl::StrContains(component, ':') || component == "localhost";
}

}  // namespace

std::string ImageReference::ToString() const {
  const std::string name =
      registry.empty() ? repository : absl::StrCat(registry, "/", repository);
  if (!digest.empty()) return absl::StrCat(name, "@", digest);
  return absl::StrCat(name, ":", tag);
}

bool IsValidRepositoryName(absl::string_view name) {
  if (name.empty() || name.size() > 255) return false;
  for (absl::string_view part : absl::StrSplit(name, '/')) {
    if (!IsValidComponent(part)) return false;
  }
  return true;
}

bool IsValidTag(absl::string_view tag) {
  if (tag.empty() || tag.size() > 128) return false;
  for (size_t i = 0; i < tag.size(); ++i) {
    const unsigned char c = tag[i];
    const bool word = absl::ascii_isalnum(c) || c == '_';
    if (!(word || (i > 0 && (c == '.' || c == '-')))) return false;
  }
  return true;
}

std::string SanitizeTag(absl::string_view text) {
  std::string tag;
  for (char c : text.substr(0, 128)) {
    const bool keep = absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
                      c == '_' || c == '.' || c == '-';
    tag.push_back(keep ? c : '-');
  }
  // A tag starts with a word character.
  const size_t first = tag.find_first_not_of(".-");
  return first == std::string::npos ? "" : tag.substr(first);
}

bool IsValidDigest(absl::string_view digest) {
  if (!absl::ConsumePrefix(&digest, "sha256:") || digest.size() != 64) {
    return false;
  }
  for (char c : digest) {
    if (!(absl::ascii_isdigit(static_cast<unsigned char>(c)) ||
          (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

absl::StatusOr<ImageReference> ParseImageReference(absl::string_view text) {
  if (absl::StrContains(text, '@')) {
    return absl::InvalidArgumentError(absl::StrCat(
        "image reference \"", text, "\": digest references cannot be pushed"));
  }
  return ParsePullReference(text);
}

absl::StatusOr<ImageReference> ParsePullReference(absl::string_view text) {
  ImageReference ref;
  absl::string_view rest = text;
  if (const size_t at = rest.find('@'); at != absl::string_view::npos) {
    ref.digest = std::string(rest.substr(at + 1));
    rest = rest.substr(0, at);
    if (!IsValidDigest(ref.digest)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "image reference \"", text, "\": invalid digest \"", ref.digest,
          "\" (expected sha256: and 64 lowercase hex digits)"));
    }
  }
  if (const size_t slash = rest.find('/');
      slash != absl::string_view::npos &&
      LooksLikeRegistry(rest.substr(0, slash))) {
    ref.registry = std::string(rest.substr(0, slash));
    rest.remove_prefix(slash + 1);
  }
  // A ':' after the last '/' starts the tag.
  const size_t last_slash = rest.rfind('/');
  const size_t colon = rest.rfind(':');
  if (colon != absl::string_view::npos &&
      (last_slash == absl::string_view::npos || colon > last_slash)) {
    ref.tag = std::string(rest.substr(colon + 1));
    rest = rest.substr(0, colon);
  }
  ref.repository = std::string(rest);
  if (!IsValidRepositoryName(ref.repository)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "image reference \"", text, "\": invalid repository name \"",
        ref.repository, "\" (lowercase letters, digits, separators . _ -)"));
  }
  if (!IsValidTag(ref.tag)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "image reference \"", text, "\": invalid tag \"", ref.tag, "\""));
  }
  return ref;
}

}  // namespace ciagent::oci
