#include "ciagent/pipeline/internal/xml.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "ciagent/base/status_macros.h"
#include "ciagent/pipeline/internal/result_limits.h"

namespace ciagent {
namespace {

// Nesting beyond this is not JUnit; refusing it bounds the element stack.
constexpr size_t kMaxXmlDepth = 256;

// Decodes the character at the start of `s` (non-empty): its code point and
// length, or nullopt for an invalid sequence (overlong, surrogate, > 10FFFF).
struct Decoded {
  uint32_t code_point;
  size_t length;
};
std::optional<Decoded> DecodeUtf8(absl::string_view s) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char b0 = byte(0);
  if (b0 < 0x80) return Decoded{b0, 1};
  size_t length;
  uint32_t cp;
  uint32_t min;
  if ((b0 & 0xE0) == 0xC0) {
    length = 2, cp = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    length = 3, cp = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    length = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    return std::nullopt;
  }
  if (s.size() < length) return std::nullopt;
  for (size_t i = 1; i < length; ++i) {
    if ((byte(i) & 0xC0) != 0x80) return std::nullopt;
    cp = (cp << 6) | (byte(i) & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    return std::nullopt;
  }
  return Decoded{cp, length};
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// One pass over one document; see ReadXml.
class XmlReader {
 public:
  XmlReader(absl::string_view input, XmlHandler* handler)
      : input_(input), handler_(handler) {}

  absl::Status Read() {
    absl::ConsumePrefix(&input_, "\xEF\xBB\xBF");
    absl::Status status = ReadDocument();
    if (!status.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(status.message(), " at line ", LineOf(pos_)));
    }
    return status;
  }

 private:
  absl::Status ReadDocument() {
    CIAGENT_RETURN_IF_ERROR(ReadMisc());
    if (AtEnd() || Peek() != '<') return Error("expected the root element");
    CIAGENT_RETURN_IF_ERROR(ReadElements());
    CIAGENT_RETURN_IF_ERROR(ReadMisc());
    if (!AtEnd()) return Error("content after the root element");
    return absl::OkStatus();
  }

  // Whitespace, comments and processing instructions, outside the root.
  absl::Status ReadMisc() {
    while (true) {
      while (!AtEnd() && IsSpace(Peek())) ++pos_;
      if (LookingAt("<?")) {
        CIAGENT_RETURN_IF_ERROR(
            SkipPast("?>", "unterminated processing instruction"));
      } else if (LookingAt("<!--")) {
        CIAGENT_RETURN_IF_ERROR(SkipPast("-->", "unterminated comment"));
      } else if (LookingAt("<!DOCTYPE")) {
        return Error("DOCTYPE is not supported");
      } else {
        return absl::OkStatus();
      }
    }
  }

  // The root element and everything inside it, without recursion.
  absl::Status ReadElements() {
    if (LookingAt("</") || LookingAt("<!")) {
      return Error("expected the root element");
    }
    std::vector<std::string> open;
    do {
      if (AtEnd()) {
        return Error(absl::StrCat("unexpected end inside <",
                                  CutUtf8(open.back(), 64), ">"));
      }
      if (Peek() != '<') {
        std::string text;
        CIAGENT_RETURN_IF_ERROR(ReadText(&text));
        handler_->Text(text, open.size());
      } else if (LookingAt("</")) {
        pos_ += 2;
        absl::string_view name;
        CIAGENT_RETURN_IF_ERROR(ReadName(&name));
        SkipSpace();
        if (!Consume('>')) return Error("expected '>' in end tag");
        if (name != open.back()) {
          return Error(absl::StrCat("end tag </", CutUtf8(name, 64),
                                    "> does not match <",
                                    CutUtf8(open.back(), 64), ">"));
        }
        open.pop_back();
        handler_->End(open.size());
      } else if (LookingAt("<!--")) {
        CIAGENT_RETURN_IF_ERROR(SkipPast("-->", "unterminated comment"));
      } else if (LookingAt("<![CDATA[")) {
        pos_ += 9;
        const size_t end = input_.find("]]>", pos_);
        if (end == absl::string_view::npos) return Error("unterminated CDATA");
        const absl::string_view text = input_.substr(pos_, end - pos_);
        CIAGENT_RETURN_IF_ERROR(CheckChars(text));
        pos_ = end + 3;
        handler_->Text(NormalizeLineEnds(text), open.size());
      } else if (LookingAt("<?")) {
        CIAGENT_RETURN_IF_ERROR(
            SkipPast("?>", "unterminated processing instruction"));
      } else if (LookingAt("<!")) {
        return Error("unsupported markup declaration");
      } else {
        if (open.size() >= kMaxXmlDepth) {
          return Error(
              absl::StrCat("elements nested deeper than ", kMaxXmlDepth));
        }
        ++pos_;
        absl::string_view name;
        CIAGENT_RETURN_IF_ERROR(ReadName(&name));
        XmlAttributes attributes;
        bool empty = false;
        CIAGENT_RETURN_IF_ERROR(ReadAttributes(&attributes, &empty));
        CIAGENT_RETURN_IF_ERROR(handler_->Start(name, attributes, open.size()));
        if (empty) {
          handler_->End(open.size());
        } else {
          open.emplace_back(name);
        }
      }
    } while (!open.empty());
    return absl::OkStatus();
  }

  absl::Status ReadAttributes(XmlAttributes* attributes, bool* empty) {
    while (true) {
      const bool spaced = SkipSpace();
      if (Consume('>')) return absl::OkStatus();
      if (LookingAt("/>")) {
        pos_ += 2;
        *empty = true;
        return absl::OkStatus();
      }
      if (AtEnd()) return Error("unterminated start tag");
      if (!spaced) return Error("expected whitespace between attributes");
      absl::string_view name;
      CIAGENT_RETURN_IF_ERROR(ReadName(&name));
      SkipSpace();
      if (!Consume('=')) return Error("expected '=' after attribute name");
      SkipSpace();
      if (AtEnd() || (Peek() != '"' && Peek() != '\'')) {
        return Error("expected a quoted attribute value");
      }
      const char quote = input_[pos_++];
      const size_t end = input_.find(quote, pos_);
      if (end == absl::string_view::npos) {
        return Error("unterminated attribute value");
      }
      const absl::string_view raw = input_.substr(pos_, end - pos_);
      if (raw.find('<') != absl::string_view::npos) {
        return Error("'<' in attribute value");
      }
      std::string value;
      CIAGENT_RETURN_IF_ERROR(Unescape(raw, /*attribute=*/true, &value));
      pos_ = end + 1;
      if (FindXmlAttribute(*attributes, name) != nullptr) {
        return Error(absl::StrCat("duplicate attribute ", CutUtf8(name, 64)));
      }
      attributes->emplace_back(std::string(name), std::move(value));
    }
  }

  absl::Status ReadText(std::string* text) {
    const size_t end = std::min(input_.find('<', pos_), input_.size());
    const absl::string_view raw = input_.substr(pos_, end - pos_);
    CIAGENT_RETURN_IF_ERROR(Unescape(raw, /*attribute=*/false, text));
    pos_ = end;
    return absl::OkStatus();
  }

  // Resolves references in `raw` (text or an attribute value, starting at
  // pos_) and checks its characters. Attribute values get their literal
  // whitespace normalized to spaces, text its line ends to "\n".
  absl::Status Unescape(absl::string_view raw, bool attribute,
                        std::string* out) {
    CIAGENT_RETURN_IF_ERROR(CheckChars(raw));
    out->reserve(raw.size());
    for (size_t i = 0; i < raw.size();) {
      const char c = raw[i];
      if (c == '&') {
        const size_t semicolon = raw.find(';', i);
        if (semicolon == absl::string_view::npos || semicolon - i > 12) {
          return ErrorAt(pos_ + i, "'&' not starting a character reference");
        }
        const absl::string_view ref = raw.substr(i + 1, semicolon - i - 1);
        if (!AppendReference(ref, out)) {
          return ErrorAt(pos_ + i,
                         absl::StrCat("unknown reference &", ref, ";"));
        }
        i = semicolon + 1;
      } else if (c == '\r') {
        out->push_back(attribute ? ' ' : '\n');
        i += (i + 1 < raw.size() && raw[i + 1] == '\n') ? 2 : 1;
      } else if (attribute && (c == '\n' || c == '\t')) {
        out->push_back(' ');
        ++i;
      } else {
        out->push_back(c);
        ++i;
      }
    }
    return absl::OkStatus();
  }

  static bool AppendReference(absl::string_view ref, std::string* out) {
    if (ref == "lt") return out->push_back('<'), true;
    if (ref == "gt") return out->push_back('>'), true;
    if (ref == "amp") return out->push_back('&'), true;
    if (ref == "quot") return out->push_back('"'), true;
    if (ref == "apos") return out->push_back('\''), true;
    if (!absl::ConsumePrefix(&ref, "#") || ref.empty()) return false;
    int base = 10;
    if (absl::ConsumePrefix(&ref, "x")) base = 16;
    if (ref.empty()) return false;
    uint32_t cp = 0;
    for (const char c : ref) {
      const int digit =
          absl::ascii_isdigit(static_cast<unsigned char>(c)) ? c - '0'
          : base == 16 && absl::ascii_isxdigit(static_cast<unsigned char>(c))
              ? absl::ascii_tolower(static_cast<unsigned char>(c)) - 'a' + 10
              : -1;
      if (digit < 0) return false;
      cp = cp * base + digit;
      if (cp > 0x10FFFF) return false;
    }
    if (!IsXmlChar(cp)) return false;
    AppendUtf8(cp, out);
    return true;
  }

  // `text` (starting at pos_) is UTF-8 made of XML characters.
  absl::Status CheckChars(absl::string_view text) {
    for (size_t i = 0; i < text.size();) {
      if (static_cast<unsigned char>(text[i]) >= 0x20) {
        if (static_cast<unsigned char>(text[i]) < 0x80) {
          ++i;
          continue;
        }
        const std::optional<Decoded> d = DecodeUtf8(text.substr(i));
        if (!d) return ErrorAt(pos_ + i, "invalid UTF-8");
        if (!IsXmlChar(d->code_point)) {
          return ErrorAt(pos_ + i, "character not allowed in XML");
        }
        i += d->length;
      } else if (text[i] == '\t' || text[i] == '\n' || text[i] == '\r') {
        ++i;
      } else {
        return ErrorAt(pos_ + i, "control character not allowed in XML");
      }
    }
    return absl::OkStatus();
  }

  static std::string NormalizeLineEnds(absl::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size(); ++i) {
      if (text[i] == '\r') {
        out.push_back('\n');
        if (i + 1 < text.size() && text[i + 1] == '\n') ++i;
      } else {
        out.push_back(text[i]);
      }
    }
    return out;
  }

  // An XML Name, ASCII-strict; other characters must be valid UTF-8.
  absl::Status ReadName(absl::string_view* name) {
    const size_t start = pos_;
    while (!AtEnd()) {
      const unsigned char c = static_cast<unsigned char>(Peek());
      const bool name_start = absl::ascii_isalpha(c) || c == '_' || c == ':';
      const bool name_char =
          name_start || absl::ascii_isdigit(c) || c == '-' || c == '.';
      if (c >= 0x80) {
        const std::optional<Decoded> d = DecodeUtf8(input_.substr(pos_));
        if (!d || !IsXmlChar(d->code_point)) return Error("invalid UTF-8");
        pos_ += d->length;
      } else if (pos_ == start ? name_start : name_char) {
        ++pos_;
      } else {
        break;
      }
    }
    if (pos_ == start) return Error("expected a name");
    *name = input_.substr(start, pos_ - start);
    return absl::OkStatus();
  }

  absl::Status SkipPast(absl::string_view end, absl::string_view what) {
    const size_t found = input_.find(end, pos_);
    if (found == absl::string_view::npos) return Error(what);
    CIAGENT_RETURN_IF_ERROR(CheckChars(input_.substr(pos_, found - pos_)));
    pos_ = found + end.size();
    return absl::OkStatus();
  }

  static bool IsSpace(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
  }
  bool SkipSpace() {
    const size_t start = pos_;
    while (!AtEnd() && IsSpace(Peek())) ++pos_;
    return pos_ != start;
  }
  bool AtEnd() const { return pos_ >= input_.size(); }
  char Peek() const { return input_[pos_]; }
  bool LookingAt(absl::string_view s) const {
    return absl::StartsWith(input_.substr(std::min(pos_, input_.size())), s);
  }
  bool Consume(char c) {
    if (AtEnd() || Peek() != c) return false;
    ++pos_;
    return true;
  }

  absl::Status Error(absl::string_view problem) {
    return absl::InvalidArgumentError(problem);
  }
  absl::Status ErrorAt(size_t pos, absl::string_view problem) {
    pos_ = pos;
    return Error(problem);
  }
  size_t LineOf(size_t pos) const {
    const absl::string_view before =
        input_.substr(0, std::min(pos, input_.size()));
    return 1 +
           static_cast<size_t>(std::count(before.begin(), before.end(), '\n'));
  }

  absl::string_view input_;
  size_t pos_ = 0;
  XmlHandler* handler_;
};

}  // namespace

const std::string* FindXmlAttribute(const XmlAttributes& attributes,
                                    absl::string_view name) {
  for (const auto& [key, value] : attributes) {
    if (key == name) return &value;
  }
  return nullptr;
}

absl::Status ReadXml(absl::string_view xml, XmlHandler* handler) {
  return XmlReader(xml, handler).Read();
}

bool IsXmlChar(uint32_t cp) {
  return cp == 0x9 || cp == 0xA || cp == 0xD || (cp >= 0x20 && cp <= 0xD7FF) ||
         (cp >= 0xE000 && cp <= 0xFFFD) || (cp >= 0x10000 && cp <= 0x10FFFF);
}

void AppendXmlEscaped(absl::string_view s, bool attribute, std::string* out) {
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      const std::optional<Decoded> d = DecodeUtf8(s.substr(i));
      if (d && IsXmlChar(d->code_point)) {
        absl::StrAppend(out, s.substr(i, d->length));
        i += d->length;
      } else {
        out->append("\xEF\xBF\xBD");
        ++i;
      }
      continue;
    }
    ++i;
    switch (c) {
      case '&':
        out->append("&amp;");
        break;
      case '<':
        out->append("&lt;");
        break;
      case '>':
        out->append("&gt;");
        break;
      case '\r':
        out->append("&#13;");
        break;
      case '"':
        out->append(attribute ? "&quot;" : "\"");
        break;
      case '\'':
        out->append(attribute ? "&apos;" : "'");
        break;
      case '\n':
        out->append(attribute ? "&#10;" : "\n");
        break;
      case '\t':
        out->append(attribute ? "&#9;" : "\t");
        break;
      default:
        if (c < 0x20) {
          out->append("\xEF\xBF\xBD");
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
  }
}

}  // namespace ciagent
