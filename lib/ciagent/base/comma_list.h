// Comma-separated lists as operators write them in flags and variables
// (CI_SECRET_ENV, CI_GIT_CREDENTIAL_HOSTS, --allowed-hosts, --steps):
// items trimmed of surrounding whitespace, empty items dropped.
//
//   SplitCommaList(" a, b,,c ")  // {"a", "b", "c"}
//
// Thread-safe: a pure function.
#ifndef CIAGENT_BASE_COMMA_LIST_H_
#define CIAGENT_BASE_COMMA_LIST_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace ciagent {

std::vector<std::string> SplitCommaList(absl::string_view list);

}  // namespace ciagent

#endif  // CIAGENT_BASE_COMMA_LIST_H_
