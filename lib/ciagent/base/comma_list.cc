#include "ciagent/base/comma_list.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"

namespace ciagent {

std::vector<std::string> SplitCommaList(absl::string_view list) {
  std::vector<std::string> items;
  for (absl::string_view item : absl::StrSplit(list, ',')) {
    item = absl::StripAsciiWhitespace(item);
    if (!item.empty()) items.emplace_back(item);
  }
  return items;
}

}  // namespace ciagent
