// WWW-Authenticate parsing (RFC 7235), for the registry's auth challenges:
//
//   Bearer
//   realm="https://git.example.com/v2/token",service="container_registry",scope="*"
//   Basic realm="Registry Realm"
//
// Pure: bytes in, challenges out. The header comes from the network, so the
// parser accepts any input without crashing (it is fuzzed) and bounds what
// it keeps.
#ifndef CIAGENT_OCI_WWW_AUTHENTICATE_H_
#define CIAGENT_OCI_WWW_AUTHENTICATE_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ciagent::oci {

struct AuthChallenge {
  std::string scheme;  // lowercased: "bearer", "basic", ...
  // Parameter names lowercased; quoted values unescaped.
  std::map<std::string, std::string> params;

  // The parameter's value, "" when absent.
  std::string Param(absl::string_view name) const;
};

// Every challenge in the header, in order. kInvalidArgument when the text is
// not a challenge list (the message quotes at most 100 bytes of it).
absl::StatusOr<std::vector<AuthChallenge>> ParseWwwAuthenticate(
    absl::string_view header);

}  // namespace ciagent::oci

#endif  // CIAGENT_OCI_WWW_AUTHENTICATE_H_
