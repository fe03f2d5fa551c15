#include "ciagent/oci/manifest.h"

#include <simdjson.h>
#include <sys/utsname.h>

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "ciagent/oci/reference.h"

namespace ciagent::oci {
namespace {

namespace dom = simdjson::dom;

constexpr size_t kMaxDescriptors = 10000;

absl::Status Invalid(absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("invalid manifest: ", why));
}

// "" when the key is absent or not a string.
std::string StringField(dom::object object, const char* key) {
  std::string_view value;
  if (object[key].get_string().get(value) != simdjson::SUCCESS) return "";
  return std::string(value);
}

absl::StatusOr<Descriptor> ParseDescriptor(dom::element element,
                                           absl::string_view where) {
  dom::object object;
  if (element.get_object().get(object) != simdjson::SUCCESS) {
    return Invalid(absl::StrCat(where, " is not an object"));
  }
  Descriptor descriptor;
  descriptor.media_type = StringField(object, "mediaType");
  descriptor.digest = StringField(object, "digest");
  if (!IsValidDigest(descriptor.digest)) {
    return Invalid(absl::StrCat(where, " has no sha256 digest"));
  }
  if (object["size"].get_int64().get(descriptor.size) != simdjson::SUCCESS ||
      descriptor.size < 0) {
    return Invalid(absl::StrCat(where, " has no valid size"));
  }
  dom::object platform;
  if (object["platform"].get_object().get(platform) == simdjson::SUCCESS) {
    descriptor.platform = absl::StrCat(StringField(platform, "os"), "/",
                                       StringField(platform, "architecture"));
    if (std::string variant = StringField(platform, "variant");
        !variant.empty()) {
      absl::StrAppend(&descriptor.platform, "/", variant);
    }
  }
  dom::object annotations;
  if (object["annotations"].get_object().get(annotations) ==
      simdjson::SUCCESS) {
    descriptor.ref_name =
        StringField(annotations, "org.opencontainers.image.ref.name");
  }
  return descriptor;
}

absl::Status ParseDescriptorArray(dom::object object, const char* key,
                                  std::vector<Descriptor>* out) {
  dom::array array;
  if (object[key].get_array().get(array) != simdjson::SUCCESS) {
    return Invalid(absl::StrCat("\"", key, "\" is not an array"));
  }
  for (dom::element element : array) {
    if (out->size() == kMaxDescriptors) {
      return Invalid(absl::StrCat("more than ", kMaxDescriptors, " ", key));
    }
    absl::StatusOr<Descriptor> descriptor =
        ParseDescriptor(element, absl::StrCat(key, "[", out->size(), "]"));
    if (!descriptor.ok()) return descriptor.status();
    out->push_back(*std::move(descriptor));
  }
  return absl::OkStatus();
}

}  // namespace

bool IsIndexMediaType(absl::string_view media_type) {
  return media_type == kOciIndex || media_type == kDockerManifestList;
}

bool IsManifestMediaType(absl::string_view media_type) {
  return IsIndexMediaType(media_type) || media_type == kOciManifest ||
         media_type == kDockerManifest;
}

absl::StatusOr<Manifest> ParseManifest(absl::string_view json) {
  dom::parser parser;
  dom::element root;
  if (simdjson::error_code error =
          parser.parse(json.data(), json.size()).get(root)) {
    return Invalid(
        absl::StrCat("not JSON (", simdjson::error_message(error), ")"));
  }
  dom::object object;
  if (root.get_object().get(object) != simdjson::SUCCESS) {
    return Invalid("not a JSON object");
  }
  int64_t schema_version = 0;
  if (object["schemaVersion"].get_int64().get(schema_version) !=
          simdjson::SUCCESS ||
      schema_version != 2) {
    return Invalid("schemaVersion is not 2");
  }
  Manifest manifest;
  manifest.media_type = StringField(object, "mediaType");
  if (manifest.media_type.empty()) {
    dom::element ignored;
    manifest.media_type = object["manifests"].get(ignored) == simdjson::SUCCESS
                              ? kOciIndex
                              : kOciManifest;
  }
  if (!IsManifestMediaType(manifest.media_type)) {
    return Invalid(absl::StrCat("unsupported mediaType \"",
                                manifest.media_type.substr(0, 100), "\""));
  }
  if (manifest.is_index()) {
    if (absl::Status status =
            ParseDescriptorArray(object, "manifests", &manifest.manifests);
        !status.ok()) {
      return status;
    }
    return manifest;
  }
  dom::element config;
  if (object["config"].get(config) != simdjson::SUCCESS) {
    return Invalid("no config");
  }
  absl::StatusOr<Descriptor> parsed_config = ParseDescriptor(config, "config");
  if (!parsed_config.ok()) return parsed_config.status();
  manifest.config = *std::move(parsed_config);
  if (absl::Status status =
          ParseDescriptorArray(object, "layers", &manifest.layers);
      !status.ok()) {
    return status;
  }
  return manifest;
}

std::string HostPlatform() {
  struct utsname host {};
  uname(&host);
  const absl::string_view machine = host.machine;
  if (machine == "x86_64") return "linux/amd64";
  if (machine == "aarch64") return "linux/arm64";
  if (machine == "armv7l") return "linux/arm/v7";
  if (machine == "i686" || machine == "i386") return "linux/386";
  return absl::StrCat("linux/", machine);
}

absl::StatusOr<Descriptor> SelectPlatform(const Manifest& index,
                                          absl::string_view platform) {
  // os, arch, variant; arm64's variant v8 is its only one.
  auto parts = [](absl::string_view text) {
    std::vector<std::string> p = absl::StrSplit(text, '/');
    p.resize(3);
    if (p[1] == "arm64" && p[2] == "v8") p[2].clear();
    return p;
  };
  const std::vector<std::string> wanted = parts(platform);
  const Descriptor* same_arch = nullptr;
  std::vector<std::string> offered;
  for (const Descriptor& entry : index.manifests) {
    if (entry.platform.empty()) continue;
    offered.push_back(entry.platform);
    const std::vector<std::string> have = parts(entry.platform);
    if (have[0] != wanted[0] || have[1] != wanted[1]) continue;
    if (have[2] == wanted[2]) return entry;
    if ((wanted[2].empty() || have[2].empty()) && same_arch == nullptr) {
      same_arch = &entry;
    }
  }
  if (same_arch != nullptr) return *same_arch;
  return absl::NotFoundError(absl::StrCat(
      "no manifest for ", platform, " (the index has ",
      offered.empty() ? "no platforms" : absl::StrJoin(offered, ", "), ")"));
}

}  // namespace ciagent::oci
