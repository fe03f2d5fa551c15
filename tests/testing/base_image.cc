#include "testing/base_image.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "ciagent/base/json_writer.h"
#include "ciagent/base/sha256.h"
#include "ciagent/base/status_macros.h"
#include "ciagent/oci/manifest.h"
#include "ciagent/oci/registry_client.h"
#include "testing/cargo_fixture.h"
#include "testing/subprocess.h"

namespace ciagent::testing {
namespace {

constexpr char kSkopeo[] = "/usr/bin/skopeo";
constexpr char kUmoci[] = "/usr/bin/umoci";

absl::Status RequireTools() {
  for (const char* tool : {kSkopeo, kUmoci}) {
    if (access(tool, X_OK) != 0) {
      return absl::NotFoundError(absl::StrCat(tool, " is not installed"));
    }
  }
  return absl::OkStatus();
}

// Runs a tool, its output in <work_dir>/<log>; returns its stdout.
absl::StatusOr<std::string> Run(const std::vector<std::string>& argv,
                                const std::string& work_dir,
                                const std::string& log) {
  const std::string path = absl::StrCat(work_dir, "/", log, ".log");
  CIAGENT_RETURN_IF_ERROR(RunTool(argv, path));
  return ReadFileOrEmpty(path);
}

absl::Status MakeRootfs(const std::string& dir, int64_t filler_bytes) {
  std::error_code error;
  for (const char* sub : {"etc", "tmp", "home/nonroot", "data"}) {
    std::filesystem::create_directories(absl::StrCat(dir, "/", sub), error);
    if (error) return absl::InternalError(error.message());
  }
  chmod(absl::StrCat(dir, "/tmp").c_str(), 01777);
  CIAGENT_RETURN_IF_ERROR(WriteText(
      dir + "/etc/passwd",
      "root:x:0:0:root:/root:/sbin/nologin\n"
      "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
      0644));
  CIAGENT_RETURN_IF_ERROR(
      WriteText(dir + "/etc/group", "root:x:0:\nnonroot:x:65532:\n", 0644));
  // Pseudo-random, so gzip cannot make the base smaller than it is.
  uint64_t state = 0x9e3779b97f4a7c15ULL;
  for (int file = 0; filler_bytes > 0; ++file) {
    const int64_t size = std::min<int64_t>(filler_bytes, 1 << 20);
    std::string bytes(static_cast<size_t>(size), '\0');
    for (char& c : bytes) {
      state = state * 6364136223846793005ULL + 1442695040888963407ULL;
      c = static_cast<char>(state >> 56);
    }
    CIAGENT_RETURN_IF_ERROR(
        WriteText(absl::StrCat(dir, "/data/filler-", file), bytes, 0644));
    filler_bytes -= size;
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteAuthFile(const std::string& path,
                           const std::vector<RegistryLogin>& logins) {
  JsonObjectBuilder auths;
  for (const RegistryLogin& login : logins) {
    JsonObjectBuilder entry;
    entry.Add("auth", absl::Base64Escape(
                          absl::StrCat(login.username, ":", login.password)));
    auths.AddRaw(login.registry, std::move(entry).Build());
  }
  JsonObjectBuilder json;
  json.AddRaw("auths", std::move(auths).Build());
  return WriteText(path, std::move(json).Build(), 0600);
}

absl::StatusOr<BaseImage> PushBaseImage(const BaseImageSpec& spec) {
  CIAGENT_RETURN_IF_ERROR(RequireTools());
  const std::string& work = spec.work_dir;
  const std::string rootfs = work + "/base-rootfs";
  const std::string layout = work + "/base-layout";
  CIAGENT_RETURN_IF_ERROR(MakeRootfs(rootfs, spec.filler_bytes));
  std::vector<std::string> auth;
  if (!spec.username.empty()) {
    const std::string auth_file = work + "/base-auth.json";
    CIAGENT_RETURN_IF_ERROR(WriteAuthFile(
        auth_file, {{spec.registry, spec.username, spec.password}}));
    auth = {"--authfile", auth_file};
  }
  CIAGENT_RETURN_IF_ERROR(
      Run({kUmoci, "init", "--layout", layout}, work, "umoci-init").status());
  BaseImage base{.reference = absl::StrCat(spec.registry, "/", spec.repository,
                                           ":", spec.tag),
                 .layers = 1};
  const bool several = spec.platforms.size() > 1;
  std::vector<std::string> entries;
  for (const std::string& platform : spec.platforms) {
    const std::vector<std::string> parts = absl::StrSplit(platform, '/');
    const std::string arch = parts.size() > 1 ? parts[1] : "amd64";
    const std::string image = absl::StrCat(layout, ":", arch);
    CIAGENT_RETURN_IF_ERROR(
        Run({kUmoci, "new", "--image", image}, work, "umoci-new").status());
    CIAGENT_RETURN_IF_ERROR(
        Run({kUmoci, "config", "--image", image, "--os", parts[0],
             "--architecture", arch, "--config.env",
             "PATH=/usr/local/bin:/usr/bin:/bin", "--config.cmd", "/bin/sh",
             "--config.workingdir", "/home/nonroot"},
            work, "umoci-config")
            .status());
    CIAGENT_RETURN_IF_ERROR(
        Run({kUmoci, "insert", "--image", image, rootfs, "/"}, work,
            "umoci-insert")
            .status());
    const std::string target =
        several ? absl::StrCat(spec.registry, "/", spec.repository, ":",
                               spec.tag, "-", arch)
                : base.reference;
    std::vector<std::string> copy = {kSkopeo, "copy", "--dest-tls-verify=false"};
    copy.insert(copy.end(), auth.begin(), auth.end());
    copy.push_back(absl::StrCat("oci:", image));
    copy.push_back("docker://" + target);
    CIAGENT_RETURN_IF_ERROR(Run(copy, work, "skopeo-copy").status());
    std::vector<std::string> inspect = {kSkopeo, "inspect", "--raw",
                                        "--tls-verify=false"};
    inspect.insert(inspect.end(), auth.begin(), auth.end());
    inspect.push_back("docker://" + target);
    CIAGENT_ASSIGN_OR_RETURN(std::string raw,
                             Run(inspect, work, "skopeo-inspect"));
    const std::string digest = absl::StrCat("sha256:", Sha256Hex(raw));
    base.manifests[platform] = digest;
    CIAGENT_ASSIGN_OR_RETURN(oci::Manifest parsed, oci::ParseManifest(raw));
    JsonObjectBuilder platform_json;
    platform_json.Add("architecture", arch).Add("os", parts[0]);
    if (parts.size() > 2) platform_json.Add("variant", parts[2]);
    JsonObjectBuilder entry;
    entry.Add("mediaType", parsed.media_type)
        .Add("digest", digest)
        .Add("size", static_cast<int64_t>(raw.size()))
        .AddRaw("platform", std::move(platform_json).Build());
    entries.push_back(std::move(entry).Build());
    base.digest = digest;
  }
  if (!several) return base;
  // The index, put with libciagent's client: skopeo 1.9 has no command
  // that writes one from images already pushed.
  const std::string index = absl::StrCat(
      R"({"schemaVersion":2,"mediaType":")", oci::kOciIndex,
      R"(","manifests":[)", absl::StrJoin(entries, ","), "]}");
  CIAGENT_ASSIGN_OR_RETURN(
      auto client, oci::RegistryClient::Create({.registry = spec.registry,
                                                .username = spec.username,
                                                .password = spec.password}));
  CIAGENT_ASSIGN_OR_RETURN(base.digest,
                           client->PutManifest(spec.repository, spec.tag,
                                               oci::kOciIndex, index));
  return base;
}

absl::StatusOr<ReadBack> ReadBackImage(const std::string& reference,
                                       const ReadBackOptions& options) {
  CIAGENT_RETURN_IF_ERROR(RequireTools());
  const std::string& work = options.work_dir;
  std::vector<std::string> auth;
  if (!options.auth_file.empty()) auth = {"--authfile", options.auth_file};
  ReadBack back;
  for (auto [flag, out] : {std::pair{"--raw", &back.raw_manifest},
                           std::pair{"--config", &back.config}}) {
    std::vector<std::string> argv = {kSkopeo, "inspect", flag,
                                     "--tls-verify=false"};
    argv.insert(argv.end(), auth.begin(), auth.end());
    argv.push_back("docker://" + reference);
    CIAGENT_ASSIGN_OR_RETURN(*out, Run(argv, work, "read-inspect"));
  }
  const std::string layout = work + "/read-layout";
  std::vector<std::string> copy = {kSkopeo, "copy", "--src-tls-verify=false"};
  if (!options.auth_file.empty()) {
    copy.insert(copy.end(), {"--src-authfile", options.auth_file});
  }
  copy.push_back("docker://" + reference);
  copy.push_back(absl::StrCat("oci:", layout, ":image"));
  CIAGENT_RETURN_IF_ERROR(Run(copy, work, "read-copy").status());
  const std::string bundle = work + "/read-bundle";
  std::vector<std::string> unpack = {kUmoci, "unpack"};
  if (geteuid() != 0) unpack.push_back("--rootless");
  unpack.insert(unpack.end(),
                {"--image", absl::StrCat(layout, ":image"), bundle});
  CIAGENT_RETURN_IF_ERROR(Run(unpack, work, "read-unpack").status());
  back.rootfs = bundle + "/rootfs";
  return back;
}

absl::StatusOr<std::string> RunFromRootfs(
    const std::string& rootfs, const std::string& path_in_image,
    const std::vector<std::string>& args) {
  std::vector<std::string> argv;
  if (geteuid() == 0) {
    argv = {"/usr/sbin/chroot", rootfs, path_in_image};
  } else {
    argv = {rootfs + path_in_image};
  }
  argv.insert(argv.end(), args.begin(), args.end());
  const std::string log = rootfs + "/../run.log";
  CIAGENT_RETURN_IF_ERROR(RunTool(argv, log));
  return ReadFileOrEmpty(log);
}

absl::StatusOr<std::string> BuildHelloBinary(const std::string& dir,
                                             const std::string& name) {
  CIAGENT_ASSIGN_OR_RETURN(std::string path, PathWithCargo());
  std::string rustc;
  for (absl::string_view entry : absl::StrSplit(path, ':')) {
    const std::string candidate = absl::StrCat(entry, "/rustc");
    if (access(candidate.c_str(), X_OK) == 0) {
      rustc = candidate;
      break;
    }
  }
  if (rustc.empty()) return absl::NotFoundError("rustc is not installed");
  const std::string source = absl::StrCat(dir, "/", name, ".rs");
  CIAGENT_RETURN_IF_ERROR(WriteText(
      source,
      "fn main() {\n"
      "    let who = std::env::args().nth(1).unwrap_or_default();\n"
      "    println!(\"hello from {}\", who);\n"
      "}\n",
      0644));
  const std::string out = absl::StrCat(dir, "/", name);
  // Static: it runs in a root filesystem without a C library.
  CIAGENT_RETURN_IF_ERROR(RunTool({rustc, "-C", "target-feature=+crt-static",
                                   "-C", "opt-level=1", "-o", out, source},
                                  out + ".rustc.log"));
  return out;
}

}  // namespace ciagent::testing
