// JSON output: string escaping and a flat object builder.
//
// Reading JSON is simdjson's job; this is the small writer libciagent uses
// for log lines, job.json and JSON-valued status fields. Output is always
// valid UTF-8: bytes that are not valid UTF-8 (cargo and test output may
// contain any) become U+FFFD.
//
// Example:
//   JsonObjectBuilder b;
//   b.Add("job_id", "j-1").Add("attempt", 2).AddRaw("env", "{}");
//   std::string json = std::move(b).Build();  // {"job_id":"j-1","attempt":2,"env":{}}
//
// Not thread-safe; a builder belongs to one thread.
#ifndef CIAGENT_BASE_JSON_WRITER_H_
#define CIAGENT_BASE_JSON_WRITER_H_

#include <cstdint>
#include <string>
#include <vector>
#include "absl/strings/string_view.h"

namespace ciagent {

// Appends `value` as a quoted JSON string to `out`.
void AppendJsonString(std::string* out, absl::string_view value);

// Returns `value` as a quoted JSON string.
std::string JsonQuote(absl::string_view value);

// Returns `items` as a JSON array of strings: ["a","b"].
std::string JsonStringArray(const std::vector<std::string>& items);

class JsonObjectBuilder {
 public:
  JsonObjectBuilder() : json_("{") {}

  JsonObjectBuilder& Add(absl::string_view key, absl::string_view value);
  JsonObjectBuilder& Add(absl::string_view key, const char* value) {
    return Add(key, absl::string_view(value));
  }
  JsonObjectBuilder& Add(absl::string_view key, const std::string& value) {
    return Add(key, absl::string_view(value));
  }
  JsonObjectBuilder& Add(absl::string_view key, int64_t value);
  JsonObjectBuilder& Add(absl::string_view key, int value) {
    return Add(key, static_cast<int64_t>(value));
  }
  JsonObjectBuilder& Add(absl::string_view key, bool value);
  // `json` must already be a valid JSON value (object, array, number...).
  JsonObjectBuilder& AddRaw(absl::string_view key, absl::string_view json);

  std::string Build() &&;

 private:
  void Key(absl::string_view key);

  std::string json_;
  bool empty_ = true;
};

}  // namespace ciagent

#endif  // CIAGENT_BASE_JSON_WRITER_H_
