#include "ciagent/base/json_writer.h"

#include "absl/strings/str_cat.h"

namespace ciagent {
namespace {

// Length of the valid UTF-8 sequence starting at s[i], or 0 if invalid.
size_t Utf8SequenceLength(absl::string_view s, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = byte(i);
  size_t len;
  uint32_t min_code_point;
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) {
    len = 2;
    min_code_point = 0x80;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3;
    min_code_point = 0x800;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4;
    min_code_point = 0x10000;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  uint32_t code_point = c & (0x7F >> len);
  for (size_t k = 1; k < len; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    code_point = (code_point << 6) | (byte(i + k) & 0x3F);
  }
  if (code_point < min_code_point || code_point > 0x10FFFF ||
      (code_point >= 0xD800 && code_point <= 0xDFFF)) {
    return 0;
  }
  return len;
}

}  // namespace

void AppendJsonString(std::string* out, absl::string_view value) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->reserve(out->size() + value.size() + 2);
  out->push_back('"');
  size_t i = 0;
  while (i < value.size()) {
    const unsigned char c = static_cast<unsigned char>(value[i]);
    switch (c) {
      case '"': out->append("\\\""); ++i; continue;
      case '\\': out->append("\\\\"); ++i; continue;
      case '\n': out->append("\\n"); ++i; continue;
      case '\r': out->append("\\r"); ++i; continue;
      case '\t': out->append("\\t"); ++i; continue;
      default: break;
    }
    if (c < 0x20 || c == 0x7F) {
      out->append("\\u00");
      out->push_back(kHex[c >> 4]);
      out->push_back(kHex[c & 0xF]);
      ++i;
      continue;
    }
    const size_t len = Utf8SequenceLength(value, i);
    if (len == 0) {
      out->append("\xEF\xBF\xBD");  // U+FFFD REPLACEMENT CHARACTER
      ++i;
      continue;
    }
    out->append(value.data() + i, len);
    i += len;
  }
  out->push_back('"');
}

std::string JsonQuote(absl::string_view value) {
  std::string out;
  AppendJsonString(&out, value);
  return out;
}

std::string JsonStringArray(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out.push_back(',');
    AppendJsonString(&out, items[i]);
  }
  out.push_back(']');
  return out;
}

void JsonObjectBuilder::Key(absl::string_view key) {
  if (!empty_) json_.push_back(',');
  empty_ = false;
  AppendJsonString(&json_, key);
  json_.push_back(':');
}

JsonObjectBuilder& JsonObjectBuilder::Add(absl::string_view key,
                                          absl::string_view value) {
  Key(key);
  AppendJsonString(&json_, value);
  return *this;
}

JsonObjectBuilder& JsonObjectBuilder::Add(absl::string_view key, int64_t value) {
  Key(key);
  absl::StrAppend(&json_, value);
  return *this;
}

JsonObjectBuilder& JsonObjectBuilder::Add(absl::string_view key, bool value) {
  Key(key);
  json_.append(value ? "true" : "false");
  return *this;
}

JsonObjectBuilder& JsonObjectBuilder::AddRaw(absl::string_view key,
                                             absl::string_view json) {
  Key(key);
  json_.append(json.data(), json.size());
  return *this;
}

std::string JsonObjectBuilder::Build() && {
  json_.push_back('}');
  return std::move(json_);
}

}  // namespace ciagent
