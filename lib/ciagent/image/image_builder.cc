#include "ciagent/image/image_builder.h"


#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string_view>
#include <system_error>

#include "absl/cleanup/cleanup.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "ciagent/base/process_runner.h"
#include "ciagent/base/status_macros.h"
#include "ciagent/oci/manifest.h"

namespace ciagent {
namespace {

namespace fs = std::filesystem;

// Variables a docker client needs to find its daemon and builder; they say
// where, not who, so passing them on leaks nothing.
constexpr const char* kDockerVariables[] = {"DOCKER_HOST", "DOCKER_CONTEXT",
                                            "DOCKER_CONFIG", "BUILDX_BUILDER"};
constexpr absl::Duration kProbeTimeout = absl::Seconds(10);
constexpr absl::Duration kRemoveImageTimeout = absl::Minutes(1);

std::string EnvOrEmpty(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? "" : value;
}

// Relative, and cannot climb out of the directory it is relative to.
bool IsContainedRelativePath(absl::string_view path) {
  if (path.empty() || path.front() == '/' ||
      path.find('\0') != absl::string_view::npos) {
    return false;
  }
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part == "..") return false;
  }
  return true;
}

// An OCI tag (image-spec, distribution): [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}.
bool IsValidTag(absl::string_view tag) {
  if (tag.empty() || tag.size() > 128 || tag.front() == '.' ||
      tag.front() == '-') {
    return false;
  }
  for (char c : tag) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' &&
        c != '.' && c != '-') {
      return false;
    }
  }
  return true;
}

absl::string_view WithoutTrailingSlashes(absl::string_view path) {
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  return path;
}

// `path` is `dir` or below it (both absolute and normalized).
bool IsSameOrWithin(absl::string_view path, absl::string_view dir) {
  return path == dir || dir == "/" ||
         (absl::StartsWith(path, dir) && path[dir.size()] == '/');
}

absl::Status ValidateOptions(const ImageBuildOptions& options) {
  if (options.context_dir.empty()) {
    return absl::InvalidArgumentError("image build: context_dir is required");
  }
  if (!IsContainedRelativePath(options.dockerfile)) {
    return absl::InvalidArgumentError(
        absl::StrCat("image build: Dockerfile path \"", options.dockerfile,
                     "\" must be relative to the checkout, without '..'"));
  }
  const absl::string_view layout = WithoutTrailingSlashes(options.layout_dir);
  if (layout.empty() || layout == "/") {
    return absl::InvalidArgumentError("image build: layout_dir is required");
  }
  // Both builders parse the destination out of a larger string:
  // oci:<path>:<tag> and --output k=v,k=v.
  if (absl::StrContains(layout, ':') || absl::StrContains(layout, ',')) {
    return absl::InvalidArgumentError(
        absl::StrCat("image build: layout_dir \"", layout,
                     "\" must not contain ':' or ','"));
  }
  if (!IsValidTag(options.tag)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "image build: \"", options.tag,
        "\" is not a valid tag ([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})"));
  }
  for (const auto& [name, value] : options.build_args) {
    if (name.empty() || absl::StrContains(name, '=')) {
      return absl::InvalidArgumentError(
          absl::StrCat("image build: build arg name \"", name,
                       "\" must be non-empty and without '='"));
    }
  }
  for (const auto& [name, path] : options.release_executables) {
    if (name.empty() || name == "." || name == ".." ||
        absl::StrContains(name, '/') || path.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "image build: release executable \"", name, "\" at \"", path,
          "\": the name must be a file name and the path non-empty"));
    }
  }
  if (options.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("image build: timeout must be > 0");
  }
  return absl::OkStatus();
}

void Emit(const ImageBuildOptions& options, absl::string_view stream,
          absl::string_view line) {
  if (options.output) options.output(stream, line);
}

// What one builder command left behind when it failed.
struct CommandOutcome {
  ProcessResult process;
  std::string error_line;  // the line most likely to say why
  bool no_space = false;
};

bool LooksLikeError(absl::string_view line) {
  return absl::StartsWithIgnoreCase(absl::StripLeadingAsciiWhitespace(line),
                                    "error");
}

// Registry trouble while pulling a base image: worth a retry later, unlike
// a Dockerfile that cannot build.
bool LooksTransient(absl::string_view line) {
  for (absl::string_view needle :
       {"pinging container registry", "dial tcp", "i/o timeout",
        "TLS handshake timeout", "connection reset by peer", "toomanyrequests",
        "503 Service Unavailable", "502 Bad Gateway"}) {
    if (absl::StrContains(line, needle)) return true;
  }
  return false;
}

// A builder that cannot work on this agent, whatever the Dockerfile.
bool LooksLikeBuilderSetup(absl::string_view line) {
  for (absl::string_view needle :
       {"Cannot connect to the Docker daemon",
        "not supported for the docker driver", "unknown command: docker buildx",
        "is not a docker command"}) {
    if (absl::StrContains(line, needle)) return true;
  }
  return false;
}

// Runs builder commands against one deadline, `budget` after `start`.
class CommandRunner {
 public:
  CommandRunner(const ImageBuildOptions& options,
                std::vector<std::pair<std::string, std::string>> env,
                absl::Time start, absl::Duration budget,
                std::function<bool()> should_stop)
      : options_(options),
        env_(std::move(env)),
        deadline_(start + budget),
        budget_(budget),
        should_stop_(std::move(should_stop)) {}

  // Runs `argv` until it ends, the deadline passes (kDeadlineExceeded) or
  // `should_stop` says so (kCancelled).
  absl::StatusOr<CommandOutcome> Run(const std::vector<std::string>& argv) {
    if (should_stop_ && should_stop_()) {
      return absl::CancelledError("image build: stopped");
    }
    const absl::Duration remaining = deadline_ - absl::Now();
    if (remaining <= absl::ZeroDuration()) return TimedOut();
    Emit(options_, "agent", absl::StrCat("$ ", absl::StrJoin(argv, " ")));
    ProcessOptions process;
    process.argv = argv;
    process.env = env_;
    process.timeout = remaining;
    process.grace = options_.grace;
    process.should_stop = should_stop_;
    CommandOutcome outcome;
    std::string last_stderr, last_stdout;
    absl::StatusOr<ProcessResult> result =
        RunProcess(process, [&](StreamKind kind, absl::string_view line) {
          const bool is_stderr = kind == StreamKind::kStderr;
          Emit(options_, is_stderr ? "stderr" : "stdout", line);
          if (absl::StrContains(absl::AsciiStrToLower(line),
                                "no space left on device")) {
            outcome.no_space = true;
          }
          if (absl::StripAsciiWhitespace(line).empty()) return;
          if (LooksLikeError(line)) outcome.error_line = std::string(line);
          (is_stderr ? last_stderr : last_stdout) = std::string(line);
        });
    if (!result.ok()) {
      if (absl::IsNotFound(result.status())) {
        return absl::FailedPreconditionError(
            absl::StrCat("image build: ", result.status().message()));
      }
      return Annotate(result.status(), "image build");
    }
    outcome.process = *result;
    if (outcome.process.stopped) {
      return absl::CancelledError("image build: stopped");
    }
    if (outcome.process.timed_out) return TimedOut();
    if (outcome.error_line.empty()) {
      outcome.error_line = !last_stderr.empty() ? last_stderr : last_stdout;
    }
    return outcome;
  }

 private:
  absl::Status TimedOut() const {
    return absl::DeadlineExceededError(absl::StrCat(
        "image build: timed out after ", absl::FormatDuration(budget_)));
  }

  const ImageBuildOptions& options_;
  std::vector<std::pair<std::string, std::string>> env_;
  absl::Time deadline_;
  absl::Duration budget_;
  std::function<bool()> should_stop_;
};

std::string ExitDescription(const CommandOutcome& outcome,
                            absl::string_view builder) {
  std::string text = outcome.process.term_signal != 0
                         ? absl::StrCat(builder, " was killed by signal ",
                                        outcome.process.term_signal)
                         : absl::StrCat(builder, " exited with code ",
                                        outcome.process.exit_code);
  if (!outcome.error_line.empty()) {
    absl::StrAppend(&text, ": ", outcome.error_line);
  }
  return text;
}

bool Succeeded(const CommandOutcome& outcome) {
  return outcome.process.exit_code == 0 && outcome.process.term_signal == 0;
}

absl::Status FileError(absl::string_view operation, const fs::path& path,
                       const std::error_code& error) {
  const std::string message = absl::StrCat(
      "image build: ", operation, " ", path.string(), ": ", error.message());
  if (error == std::errc::no_space_on_device) {
    return absl::UnavailableError(message);
  }
  return absl::InternalError(message);
}

// Hard link, or a copy when a link cannot be made (another filesystem).
absl::Status PlaceReleaseExecutables(const ImageBuildOptions& options) {
  if (options.release_executables.empty()) return absl::OkStatus();
  const fs::path dir = fs::path(options.context_dir) / "target" / "release";
  std::error_code error;
  fs::create_directories(dir, error);
  if (error) return FileError("create", dir, error);
  for (const auto& [name, path] : options.release_executables) {
    const fs::path dest = dir / name;
    // The file itself: a link to a symlink would dangle in the image.
    const fs::path source = fs::canonical(path, error);
    if (error || !fs::is_regular_file(source, error)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "image build: release executable ", name, ": no file at ", path));
    }
    if (fs::equivalent(source, dest, error)) continue;
    fs::remove(dest, error);
    if (error) return FileError("replace", dest, error);
    fs::create_hard_link(source, dest, error);
    if (!error) {
      Emit(options, "agent",
           absl::StrCat("linked ", path, " to ", dest.string()));
      continue;
    }
    fs::copy_file(source, dest, fs::copy_options::overwrite_existing, error);
    if (error) return FileError("copy to", dest, error);
    Emit(options, "agent",
         absl::StrCat("copied ", path, " to ", dest.string()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadSmallFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InternalError(absl::StrCat("image build: read ", path.string(),
                                            ": ", std::strerror(errno)));
  }
  std::stringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

// True when `docker` reaches a daemon and has buildx: the docker builder
// can then run.
bool DockerUsable(const ImageBuildOptions& options,
                  const std::vector<std::pair<std::string, std::string>>& env,
                  const std::string& docker, std::string* why_not) {
  for (const std::vector<std::string>& argv :
       {std::vector<std::string>{docker, "info", "--format",
                                 "{{.ServerVersion}}"},
        std::vector<std::string>{docker, "buildx", "version"}}) {
    ProcessOptions probe;
    probe.argv = argv;
    probe.env = env;
    probe.timeout = kProbeTimeout;
    probe.grace = absl::Seconds(1);
    probe.should_stop = options.should_stop;
    absl::StatusOr<ProcessResult> result = RunProcess(probe, nullptr);
    if (!result.ok() || result->exit_code != 0) {
      *why_not = absl::StrCat("`docker ", argv[1], "` failed");
      return false;
    }
  }
  return true;
}

std::vector<std::pair<std::string, std::string>> BuilderEnv(
    const ImageBuildOptions& options, absl::string_view builder,
    const std::string& path, const std::string& tmp_dir) {
  std::vector<std::pair<std::string, std::string>> env = {
      {"PATH", path}, {"HOME", EnvOrEmpty("HOME")}};
  if (!tmp_dir.empty()) env.emplace_back("TMPDIR", tmp_dir);
  if (builder == "buildah") {
    env.emplace_back("BUILDAH_ISOLATION", "chroot");
    env.emplace_back("STORAGE_DRIVER", "vfs");
  } else {
    for (const char* name : kDockerVariables) {
      if (std::string value = EnvOrEmpty(name); !value.empty()) {
        env.emplace_back(name, std::move(value));
      }
    }
  }
  env.insert(env.end(), options.env.begin(), options.env.end());
  return env;
}

}  // namespace

bool HasDockerfile(absl::string_view source_dir, absl::string_view dockerfile) {
  if (source_dir.empty() || !IsContainedRelativePath(dockerfile)) return false;
  std::error_code error;
  return fs::is_regular_file(
      fs::path(std::string(source_dir)) / std::string(dockerfile), error);
}

absl::StatusOr<ImageBuildCommands> PlanImageBuild(
    const ImageBuildOptions& options, absl::string_view builder,
    absl::string_view image_name) {
  CIAGENT_RETURN_IF_ERROR(ValidateOptions(options));
  if (image_name.empty()) {
    return absl::InvalidArgumentError("image build: image_name is required");
  }
  ImageBuildCommands plan;
  plan.work_dir =
      absl::StrCat(WithoutTrailingSlashes(options.layout_dir), ".work");
  plan.staging_dir = plan.work_dir + "/layout";
  plan.tmp_dir = plan.work_dir + "/tmp";
  const std::string dockerfile = absl::StrCat(
      WithoutTrailingSlashes(options.context_dir), "/", options.dockerfile);
  std::vector<std::string> common_build_flags;
  if (!options.platform.empty()) {
    common_build_flags.insert(common_build_flags.end(),
                              {"--platform", options.platform});
  }
  for (const auto& [name, value] : options.build_args) {
    common_build_flags.insert(common_build_flags.end(),
                              {"--build-arg", absl::StrCat(name, "=", value)});
  }

  if (builder == "buildah") {
    plan.storage_dir = options.storage_dir.empty() ? plan.work_dir + "/storage"
                                                   : options.storage_dir;
    plan.runroot_dir = plan.work_dir + "/run";
    const std::vector<std::string> global = {
        "buildah",   "--root",         plan.storage_dir,
        "--runroot", plan.runroot_dir, "--storage-driver",
        "vfs"};
    plan.build = global;
    plan.build.insert(plan.build.end(),
                      {"bud", "--isolation", "chroot", "-f", dockerfile, "-t",
                       std::string(image_name)});
    plan.build.insert(plan.build.end(), common_build_flags.begin(),
                      common_build_flags.end());
    plan.build.push_back(options.context_dir);
    plan.export_layout = global;
    plan.export_layout.insert(
        plan.export_layout.end(),
        {"push", std::string(image_name),
         absl::StrCat("oci:", plan.staging_dir, ":", options.tag)});
    if (!options.storage_dir.empty()) {
      plan.remove_image = global;
      plan.remove_image.insert(plan.remove_image.end(),
                               {"rmi", std::string(image_name)});
    }
    return plan;
  }
  if (builder == "docker") {
    plan.build = {"docker", "buildx", "build", "--file", dockerfile, "--output",
                  absl::StrCat("type=oci,dest=", plan.staging_dir,
                               ",tar=false,name=", image_name),
                  // Attestations would turn the single image into an index.
                  "--provenance=false"};
    plan.build.insert(plan.build.end(), common_build_flags.begin(),
                      common_build_flags.end());
    if (!options.cache_ref.empty()) {
      plan.build.insert(
          plan.build.end(),
          {"--cache-from",
           absl::StrCat("type=registry,ref=", options.cache_ref), "--cache-to",
           absl::StrCat("type=registry,ref=", options.cache_ref, ",mode=max")});
    }
    plan.build.push_back(options.context_dir);
    return plan;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("image build: unknown builder \"", builder,
                   "\" (want buildah or docker)"));
}

absl::StatusOr<LayoutManifest> FindTaggedManifest(absl::string_view index_json,
                                                  absl::string_view tag) {
  absl::StatusOr<oci::Manifest> index = oci::ParseManifest(index_json);
  if (!index.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "OCI layout index.json: ", index.status().message()));
  }
  if (!index->is_index()) {
    return absl::InvalidArgumentError(
        "OCI layout index.json: not an image index");
  }
  for (const oci::Descriptor& entry : index->manifests) {
    if (entry.ref_name == tag) {
      return LayoutManifest{.digest = entry.digest,
                            .media_type = entry.media_type,
                            .size = entry.size};
    }
  }
  return absl::NotFoundError(
      absl::StrCat("OCI layout index.json: no manifest tagged ", tag));
}

absl::StatusOr<ImageBuildResult> BuildImage(const ImageBuildOptions& options) {
  const absl::Time start = absl::Now();
  CIAGENT_RETURN_IF_ERROR(ValidateOptions(options));
  // Absolute paths: the builders run elsewhere, and the paths are logged.
  ImageBuildOptions resolved = options;
  for (std::string* dir :
       {&resolved.context_dir, &resolved.layout_dir, &resolved.storage_dir}) {
    if (dir->empty()) continue;
    std::error_code error;
    fs::path absolute = fs::absolute(*dir, error);
    if (error) return FileError("resolve", *dir, error);
    *dir = std::string(
        WithoutTrailingSlashes(absolute.lexically_normal().string()));
  }
  // The layout and its work dir are deleted first: they must not hold
  // the checkout or the storage.
  for (const std::string& kept : {resolved.context_dir, resolved.storage_dir}) {
    for (const std::string& deleted :
         {resolved.layout_dir, resolved.layout_dir + ".work"}) {
      if (!kept.empty() && IsSameOrWithin(kept, deleted)) {
        return absl::InvalidArgumentError(
            absl::StrCat("image build: layout_dir ", resolved.layout_dir,
                         " would hold ", kept, ", which it replaces"));
      }
    }
  }
  if (!fs::is_directory(resolved.context_dir)) {
    return absl::InvalidArgumentError(
        absl::StrCat("image build: no checkout at ", resolved.context_dir));
  }
  if (!HasDockerfile(resolved.context_dir, resolved.dockerfile)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "image build: no ", resolved.dockerfile, " in ", resolved.context_dir));
  }

  const std::string path =
      resolved.path.empty() ? EnvOrEmpty("PATH") : resolved.path;
  std::string builder = resolved.builder;
  if (builder == "auto") {
    std::string why_not = "docker is not in PATH";
    const std::string docker = FindExecutable("docker", path);
    if (!docker.empty() &&
        DockerUsable(resolved, BuilderEnv(resolved, "docker", path, ""), docker,
                     &why_not)) {
      builder = "docker";
    } else if (!FindExecutable("buildah", path).empty()) {
      builder = "buildah";
      Emit(resolved, "agent",
           absl::StrCat("image builder: buildah (", why_not, ")"));
    } else {
      return absl::FailedPreconditionError(absl::StrCat(
          "no image builder: install buildah, or docker with buildx and a "
          "reachable daemon (buildah is not in PATH; ",
          why_not, ")"));
    }
    if (builder == "docker") Emit(resolved, "agent", "image builder: docker");
    if (resolved.should_stop && resolved.should_stop()) {
      return absl::CancelledError("image build: stopped");
    }
  } else if ((builder == "buildah" || builder == "docker") &&
             FindExecutable(builder, path).empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "no image builder: ", builder, " is not in PATH (install ",
        builder == "buildah" ? "buildah" : "docker with buildx", ")"));
  }

  // Unique per build: agents may share a buildah storage.
  absl::BitGen random;
  const std::string image_name =
      absl::StrCat("localhost/ciagent-image-",
                   absl::Hex(absl::Uniform<uint64_t>(random), absl::kZeroPad16),
                   ":", resolved.tag);
  CIAGENT_ASSIGN_OR_RETURN(ImageBuildCommands plan,
                           PlanImageBuild(resolved, builder, image_name));

  std::error_code error;
  for (const std::string& dir : {resolved.layout_dir, plan.work_dir}) {
    fs::remove_all(dir, error);
    if (error) return FileError("remove", dir, error);
  }
  absl::Cleanup remove_work_dir = [&] {
    std::error_code ignored;
    fs::remove_all(plan.work_dir, ignored);
  };
  for (const std::string& dir :
       {plan.tmp_dir, plan.runroot_dir, plan.storage_dir}) {
    if (dir.empty()) continue;
    fs::create_directories(dir, error);
    if (error) return FileError("create", dir, error);
  }
  CIAGENT_RETURN_IF_ERROR(PlaceReleaseExecutables(resolved));

  const std::vector<std::pair<std::string, std::string>> env =
      BuilderEnv(resolved, builder, path, plan.tmp_dir);
  CommandRunner runner(resolved, env, start, resolved.timeout,
                       resolved.should_stop);
  CIAGENT_ASSIGN_OR_RETURN(CommandOutcome built, runner.Run(plan.build));
  if (!Succeeded(built)) {
    const std::string message =
        absl::StrCat("image build failed on ", resolved.dockerfile, ": ",
                     ExitDescription(built, builder));
    if (built.no_space || LooksTransient(built.error_line)) {
      return absl::UnavailableError(message);
    }
    if (LooksLikeBuilderSetup(built.error_line)) {
      return absl::FailedPreconditionError(message);
    }
    return absl::InvalidArgumentError(message);
  }
  absl::Status exported = absl::OkStatus();
  if (!plan.export_layout.empty()) {
    absl::StatusOr<CommandOutcome> pushed = runner.Run(plan.export_layout);
    if (!pushed.ok()) {
      exported = pushed.status();
    } else if (!Succeeded(*pushed)) {
      const std::string message =
          absl::StrCat("image build: export to OCI layout failed: ",
                       ExitDescription(*pushed, builder));
      exported = pushed->no_space ? absl::UnavailableError(message)
                                  : absl::InternalError(message);
    }
  }
  if (!plan.remove_image.empty()) {
    // The image is in the layout (or lost); storage keeps only base images.
    // Even after a stop or timeout: it is quick, and keeps a shared storage
    // from filling up with images nobody will use.
    CommandRunner remover(resolved, env, absl::Now(), kRemoveImageTimeout,
                          nullptr);
    absl::StatusOr<CommandOutcome> removed = remover.Run(plan.remove_image);
    if (!removed.ok() || !Succeeded(*removed)) {
      Emit(resolved, "agent",
           absl::StrCat("could not remove ", image_name, " from ",
                        plan.storage_dir));
    }
  }
  CIAGENT_RETURN_IF_ERROR(exported);

  fs::rename(plan.staging_dir, resolved.layout_dir, error);
  if (error) return FileError("move layout to", resolved.layout_dir, error);
  CIAGENT_ASSIGN_OR_RETURN(
      std::string index,
      ReadSmallFile(fs::path(resolved.layout_dir) / "index.json"));
  absl::StatusOr<LayoutManifest> manifest =
      FindTaggedManifest(index, resolved.tag);
  if (!manifest.ok()) {
    return absl::InternalError(absl::StrCat("image build: ", builder, " wrote ",
                                            resolved.layout_dir, ": ",
                                            manifest.status().message()));
  }
  const fs::path blob = fs::path(resolved.layout_dir) / "blobs" / "sha256" /
                        manifest->digest.substr(std::strlen("sha256:"));
  if (!fs::is_regular_file(blob, error)) {
    return absl::InternalError(
        absl::StrCat("image build: ", resolved.layout_dir,
                     " lacks the blob of manifest ", manifest->digest));
  }

  ImageBuildResult result;
  result.layout_dir = resolved.layout_dir;
  result.builder = builder;
  result.manifest_digest = manifest->digest;
  result.manifest_media_type = manifest->media_type;
  result.duration = absl::Now() - start;
  return result;
}

}  // namespace ciagent
