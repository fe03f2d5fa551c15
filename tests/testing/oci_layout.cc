#include "testing/oci_layout.h"

#include <simdjson.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "ciagent/base/sha256.h"
#include "gtest/gtest.h"
#include "testing/subprocess.h"

namespace ciagent::testing {
namespace {

constexpr char kPython[] = "/usr/bin/python3";

bool IsFile(const std::filesystem::path& path) {
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec);
}

// make_oci_layout.py: CIAGENT_MAKE_OCI_LAYOUT (meson sets it), else beside
// this source file.
absl::StatusOr<std::string> FindScript() {
  if (auto from_env = PathFromEnv("CIAGENT_MAKE_OCI_LAYOUT"); from_env.ok()) {
    return *from_env;
  }
  const auto beside =
      std::filesystem::path(__FILE__).parent_path() / "make_oci_layout.py";
  if (IsFile(beside)) return beside.string();
  return absl::FailedPreconditionError(
      "make_oci_layout.py not found; set CIAGENT_MAKE_OCI_LAYOUT");
}

// Runs argv; stdout goes to `out_path`. kNotFound when argv[0] is missing.
absl::Status Run(const std::vector<std::string>& argv,
                 const std::string& out_path) {
  if (!IsFile(argv[0])) {
    return absl::NotFoundError(absl::StrCat(argv[0], " is not installed"));
  }
  const std::string err_path = out_path + ".err";
  auto process = Subprocess::Start(
      argv, {.stdout_path = out_path, .stderr_path = err_path});
  if (!process.ok()) return process.status();
  absl::StatusOr<int> code = (*process)->Wait(absl::Seconds(120));
  if (!code.ok()) return code.status();
  if (*code != 0) {
    return absl::InternalError(absl::StrCat(argv[0], " ", argv[1], " exited ",
                                            *code, ": ",
                                            ReadFileOrEmpty(err_path)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TestLayout> MakeOciLayout(const std::string& dir,
                                         const LayoutSpec& spec) {
  absl::StatusOr<std::string> script = FindScript();
  if (!script.ok()) return script.status();
  std::vector<std::string> argv = {kPython,
                                   *script,
                                   dir,
                                   "--layers",
                                   absl::StrCat(spec.layers),
                                   "--layer-size",
                                   absl::StrCat(spec.layer_bytes),
                                   "--seed",
                                   absl::StrCat(spec.seed),
                                   "--tag",
                                   spec.tag,
                                   "--jobs",
                                   "1"};
  if (!spec.platforms.empty()) {
    argv.push_back("--platforms");
    argv.push_back(spec.platforms);
  }
  if (spec.nested_index) argv.push_back("--nested-index");
  const std::string summary_path = dir + ".summary.json";
  if (absl::Status s = Run(argv, summary_path); !s.ok()) return s;
  const std::string summary = ReadFileOrEmpty(summary_path);
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  std::string_view digest;
  simdjson::dom::array blobs;
  if (parser.parse(summary).get(root) != simdjson::SUCCESS ||
      root["manifest_digest"].get_string().get(digest) != simdjson::SUCCESS ||
      root["blobs"].get_array().get(blobs) != simdjson::SUCCESS) {
    return absl::InternalError(
        absl::StrCat("unexpected make_oci_layout.py output: ", summary));
  }
  TestLayout layout{.dir = dir, .root_digest = std::string(digest)};
  for (simdjson::dom::element blob : blobs) {
    std::string_view blob_digest;
    if (blob["digest"].get_string().get(blob_digest) == simdjson::SUCCESS) {
      layout.blob_digests.emplace_back(blob_digest);
    }
  }
  return layout;
}

absl::StatusOr<std::string> InspectDigest(const std::string& image,
                                          const InspectOptions& options) {
  std::vector<std::string> argv = {"/usr/bin/skopeo", "inspect", "--raw"};
  if (options.ca_file.empty()) {
    argv.push_back("--tls-verify=false");
  } else {
    // skopeo reads CAs from a directory of *.crt files.
    const std::string cert_dir = ::testing::TempDir() + "/skopeo-certs-" +
                                 Sha256Hex(options.ca_file).substr(0, 12);
    std::error_code ec;
    std::filesystem::create_directories(cert_dir, ec);
    std::filesystem::copy_file(
        options.ca_file, cert_dir + "/ca.crt",
        std::filesystem::copy_options::overwrite_existing, ec);
    if (ec) return absl::InternalError(absl::StrCat("copy CA: ", ec.message()));
    argv.push_back("--cert-dir=" + cert_dir);
  }
  if (!options.username.empty()) {
    // An auth file, as a credential never goes on a command line.
    const std::string auth_file = ::testing::TempDir() + "/skopeo-auth-" +
                                  Sha256Hex(image).substr(0, 12) + ".json";
    const std::string registry = image.substr(0, image.find('/'));
    std::ofstream(auth_file, std::ios::trunc)
        << "{\"auths\":{\"" << registry << "\":{\"auth\":\""
        << absl::Base64Escape(
               absl::StrCat(options.username, ":", options.password))
        << "\"}}}";
    chmod(auth_file.c_str(), 0600);
    argv.push_back("--authfile=" + auth_file);
  }
  argv.push_back("docker://" + image);
  const std::string out_path = ::testing::TempDir() + "/skopeo-inspect-" +
                               Sha256Hex(image).substr(0, 12) + ".json";
  if (absl::Status s = Run(argv, out_path); !s.ok()) return s;
  return absl::StrCat("sha256:", Sha256Hex(ReadFileOrEmpty(out_path)));
}

}  // namespace ciagent::testing
