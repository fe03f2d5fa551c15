#include "ciagent/oci/www_authenticate.h"

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace ciagent::oci {
namespace {

// RFC 7230 tchar.
bool IsTokenChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
         absl::string_view("!#$%&'*+-.^_`|~").find(c) !=
             absl::string_view::npos;
}

class Scanner {
 public:
  explicit Scanner(absl::string_view text) : text_(text) {}

  bool done() const { return pos_ >= text_.size(); }
  char peek() const { return done() ? '\0' : text_[pos_]; }
  void SkipSpace() {
    while (!done() && (text_[pos_] == ' ' || text_[pos_] == '\t')) ++pos_;
  }
  bool Consume(char c) {
    if (peek() != c) return false;
    ++pos_;
    return true;
  }
  // token68 allows '/' and '=' too (Basic's base64 credentials form).
  absl::string_view Token(bool token68 = false) {
    const size_t start = pos_;
    while (!done() &&
           (IsTokenChar(text_[pos_]) ||
            (token68 && (text_[pos_] == '/' || text_[pos_] == '=')))) {
      ++pos_;
    }
    return text_.substr(start, pos_ - start);
  }
  bool Quoted(std::string* out) {
    if (!Consume('"')) return false;
    while (!done()) {
      char c = text_[pos_++];
      if (c == '"') return true;
      if (c == '\\') {
        if (done()) return false;
        c = text_[pos_++];
      }
      out->push_back(c);
    }
    return false;
  }
  size_t pos() const { return pos_; }
  void set_pos(size_t pos) { pos_ = pos; }

 private:
  absl::string_view text_;
  size_t pos_ = 0;
};

absl::Status Malformed(absl::string_view header, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("malformed WWW-Authenticate (", why, "): \"",
                   absl::CEscape(header.substr(0, 100)), "\""));
}

}  // namespace

std::string AuthChallenge::Param(absl::string_view name) const {
  auto it = params.find(std::string(name));
  return it == params.end() ? "" : it->second;
}

absl::StatusOr<std::vector<AuthChallenge>> ParseWwwAuthenticate(
    absl::string_view header) {
  // Registries send one or two challenges with a few parameters; anything
  // far beyond that is hostile.
  constexpr size_t kMaxChallenges = 16;
  constexpr size_t kMaxParams = 32;
  std::vector<AuthChallenge> challenges;
  Scanner in(header);
  in.SkipSpace();
  while (!in.done()) {
    if (in.Consume(',')) {  // empty list elements are allowed
      in.SkipSpace();
      continue;
    }
    const absl::string_view scheme = in.Token();
    if (scheme.empty()) return Malformed(header, "expected a scheme");
    if (challenges.size() == kMaxChallenges) {
      return Malformed(header, "too many challenges");
    }
    AuthChallenge challenge;
    challenge.scheme = absl::AsciiStrToLower(scheme);
    in.SkipSpace();
    // Parameters: name = value pairs separated by commas, until the next
    // token that is not followed by '=' (the next challenge's scheme).
    while (!in.done()) {
      const size_t mark = in.pos();
      const absl::string_view name = in.Token();
      in.SkipSpace();
      if (name.empty() || !in.Consume('=')) {
        in.set_pos(mark);
        if (!name.empty() || in.peek() != ',') break;
        in.Consume(',');
        in.SkipSpace();
        continue;
      }
      in.SkipSpace();
      std::string value;
      if (in.peek() == '"') {
        if (!in.Quoted(&value)) return Malformed(header, "unterminated quote");
      } else {
        value = std::string(in.Token(/*token68=*/true));
      }
      if (challenge.params.size() == kMaxParams) {
        return Malformed(header, "too many parameters");
      }
      challenge.params[absl::AsciiStrToLower(name)] = std::move(value);
      in.SkipSpace();
      if (!in.Consume(',')) break;
      in.SkipSpace();
    }
    challenges.push_back(std::move(challenge));
    in.SkipSpace();
    if (!in.done() && !IsTokenChar(in.peek()) && in.peek() != ',') {
      return Malformed(header, "unexpected character");
    }
  }
  if (challenges.empty()) return Malformed(header, "no challenge");
  return challenges;
}

}  // namespace ciagent::oci
