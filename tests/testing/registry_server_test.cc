// RegistryServer, FaultProxy and QuirksRegistry, proven with curl and
// skopeo as clients (independently of the library's own registry client):
// anonymous, Basic, token and HTTPS registries, a full push by hand, fault
// rates and faithful forwarding through the proxy, and the Gitea quirks.
#include "testing/registry_server.h"

#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/redis_server.h"
#include "testing/status_matchers.h"
#include "testing/subprocess.h"

namespace ciagent::testing {
namespace {

using ::testing::AllOf;
using ::testing::Ge;
using ::testing::HasSubstr;
using ::testing::Le;
using ::testing::Not;
using ::testing::StartsWith;
using Auth = RegistryServerOptions::Auth;

constexpr char kUser[] = "ci";
constexpr char kPassword[] = "s3cret-registry-pass";
constexpr char kOciManifest[] = "application/vnd.oci.image.manifest.v1+json";

std::string Sha256Digest(const std::string& path) {
  // sha256sum keeps the test independent of the library's own hashing.
  auto process = Subprocess::Start(
      {"sha256sum", path}, {.stdout_path = path + ".sum",
                            .stderr_path = path + ".sum.err"});
  if (!process.ok() || !(*process)->Wait().ok()) return "";
  std::string sum = ReadFileOrEmpty(path + ".sum");
  return absl::StrCat("sha256:", sum.substr(0, sum.find(' ')));
}

struct HttpResult {
  int curl_exit = -1;
  int status = 0;
  // Header names lower-cased; the last value wins.
  std::map<std::string, std::string> headers;
  std::string body;

  std::string Header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

class RegistryServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = MakeTempDir("ciagent-registry-test-");
    ASSERT_TRUE(dir.ok()) << dir.status();
    scratch_ = *dir;
  }
  void TearDown() override { RemoveTree(scratch_); }

  std::string Scratch(const std::string& name) const {
    return absl::StrCat(scratch_, "/", name);
  }

  std::string WriteFile(const std::string& name, const std::string& data,
                        mode_t mode = 0600) {
    const std::string path = Scratch(name);
    std::FILE* f = std::fopen(path.c_str(), "wb");
    EXPECT_NE(f, nullptr) << path;
    if (f == nullptr) return path;
    std::fwrite(data.data(), 1, data.size(), f);
    std::fclose(f);
    ::chmod(path.c_str(), mode);
    return path;
  }

  // A curl config file carrying credentials (or a bearer token), so that no
  // secret lands in argv.
  std::string BasicAuthConfig() {
    return WriteFile("basic.curlrc",
                     absl::StrCat("user = \"", kUser, ":", kPassword, "\"\n"));
  }
  std::string BearerConfig(const std::string& token) {
    return WriteFile("bearer.curlrc",
                     absl::StrCat("header = \"Authorization: Bearer ", token,
                                  "\"\n"));
  }

  // One curl exchange; `args` add method, headers, body and the URL.
  HttpResult Curl(const std::vector<std::string>& args) {
    const std::string id = absl::StrCat(++curl_calls_);
    const std::string headers = Scratch(absl::StrCat("h", id));
    const std::string body = Scratch(absl::StrCat("b", id));
    std::vector<std::string> argv = {"curl", "-sS", "--max-time", "30",
                                     "-D", headers, "-o", body,
                                     "-w", "%{http_code}"};
    argv.insert(argv.end(), args.begin(), args.end());
    HttpResult result;
    const std::string out = Scratch(absl::StrCat("o", id));
    auto process = Subprocess::Start(
        argv, {.stdout_path = out, .stderr_path = out + ".err"});
    EXPECT_TRUE(process.ok()) << process.status();
    if (!process.ok()) return result;
    auto code = (*process)->Wait(absl::Seconds(40));
    EXPECT_TRUE(code.ok()) << code.status();
    if (!code.ok()) return result;
    result.curl_exit = *code;
    (void)absl::SimpleAtoi(ReadFileOrEmpty(out), &result.status);
    result.body = ReadFileOrEmpty(body);
    // -D holds every response (401 then 200, 100 Continue, ...): keep the
    // last one's headers.
    for (absl::string_view line :
         absl::StrSplit(ReadFileOrEmpty(headers), "\r\n")) {
      if (absl::StartsWith(line, "HTTP/")) {
        result.headers.clear();
        continue;
      }
      std::pair<absl::string_view, absl::string_view> kv =
          absl::StrSplit(line, absl::MaxSplits(':', 1));
      if (kv.second.empty()) continue;
      result.headers[absl::AsciiStrToLower(kv.first)] =
          std::string(absl::StripAsciiWhitespace(kv.second));
    }
    return result;
  }

  // Runs a tool; returns {exit code, stdout + stderr}.
  std::pair<int, std::string> Run(const std::vector<std::string>& argv) {
    const std::string out = Scratch(absl::StrCat("run", ++curl_calls_));
    auto process = Subprocess::Start(
        argv, {.stdout_path = out, .stderr_path = out + ".err"});
    if (!process.ok()) return {-1, std::string(process.status().message())};
    auto code = (*process)->Wait(absl::Seconds(40));
    if (!code.ok()) return {-1, std::string(code.status().message())};
    return {*code, ReadFileOrEmpty(out) + ReadFileOrEmpty(out + ".err")};
  }

  // The token from a Bearer realm, asked with Basic credentials.
  std::string FetchToken(const std::string& realm_url,
                         const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"-K", BasicAuthConfig()};
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back(realm_url);
    HttpResult answer = Curl(args);
    EXPECT_EQ(answer.status, 200) << answer.body;
    const std::string marker = "\"token\": \"";
    size_t at = answer.body.find(marker);
    if (at == std::string::npos) {
      at = answer.body.find("\"token\":\"");
      if (at == std::string::npos) return "";
      at += 9;
    } else {
      at += marker.size();
    }
    return answer.body.substr(at, answer.body.find('"', at) - at);
  }

  // Joins an upload Location with a query parameter, resolving a relative
  // one against `base`.
  static std::string WithParam(const std::string& base,
                               const std::string& location,
                               const std::string& param) {
    std::string url =
        absl::StartsWith(location, "/") ? base + location : location;
    return absl::StrCat(url, absl::StrContains(url, '?') ? "&" : "?", param);
  }

  struct PushedImage {
    std::string manifest_digest;
    std::string layer_digest;
    std::string layer;
  };

  // Pushes a one-layer OCI image by hand with curl: each blob with POST and
  // a monolithic PUT, then the manifest. `auth` is a curl config file
  // (credentials or bearer token), or "".
  PushedImage PushSmallImage(const std::string& base, const std::string& auth,
                             const std::string& repo, const std::string& tag) {
    PushedImage image;
    image.layer = absl::StrCat("layer bytes of ", repo, ":", tag, "\n");
    const std::string layer_file = WriteFile("layer", image.layer);
    image.layer_digest = Sha256Digest(layer_file);
    const std::string config = absl::StrCat(
        R"({"architecture":"amd64","os":"linux","rootfs":{"type":"layers",)",
        R"("diff_ids":[")", image.layer_digest, R"("]}})");
    const std::string config_file = WriteFile("config", config);
    const std::string config_digest = Sha256Digest(config_file);
    std::vector<std::string> auth_args;
    if (!auth.empty()) auth_args = {"-K", auth};
    for (const auto& [file, digest] :
         {std::pair{layer_file, image.layer_digest},
          std::pair{config_file, config_digest}}) {
      std::vector<std::string> post = auth_args;
      post.insert(post.end(),
                  {"-X", "POST", absl::StrCat(base, "/v2/", repo,
                                              "/blobs/uploads/")});
      HttpResult started = Curl(post);
      EXPECT_EQ(started.status, 202) << started.body;
      std::vector<std::string> put = auth_args;
      put.insert(put.end(),
                 {"-X", "PUT", "-H", "Content-Type: application/octet-stream",
                  "--data-binary", absl::StrCat("@", file),
                  WithParam(base, started.Header("location"),
                            absl::StrCat("digest=", digest))});
      HttpResult finished = Curl(put);
      EXPECT_EQ(finished.status, 201) << finished.body;
      EXPECT_EQ(finished.Header("docker-content-digest"), digest);
    }
    const std::string manifest = absl::StrCat(
        R"({"schemaVersion":2,"mediaType":")", kOciManifest,
        R"(","config":{"mediaType":"application/vnd.oci.image.config.v1+json",)",
        R"("digest":")", config_digest, R"(","size":)", config.size(),
        R"(},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar",)",
        R"("digest":")", image.layer_digest, R"(","size":)",
        image.layer.size(), "}]}");
    const std::string manifest_file = WriteFile("manifest", manifest);
    image.manifest_digest = Sha256Digest(manifest_file);
    std::vector<std::string> put = auth_args;
    put.insert(put.end(),
               {"-X", "PUT", "-H", absl::StrCat("Content-Type: ", kOciManifest),
                "--data-binary", absl::StrCat("@", manifest_file),
                absl::StrCat(base, "/v2/", repo, "/manifests/", tag)});
    HttpResult pushed = Curl(put);
    EXPECT_EQ(pushed.status, 201) << pushed.body;
    EXPECT_EQ(pushed.Header("docker-content-digest"), image.manifest_digest);
    return image;
  }

  // skopeo inspect of host/repo:tag over plain HTTP, the credentials in an
  // auth file; returns its output (JSON) or "" after a failed expectation.
  std::string SkopeoInspect(const std::string& host, const std::string& repo,
                            const std::string& tag) {
    const std::string authfile = WriteFile(
        "auth.json",
        absl::StrCat(R"({"auths":{")", host, R"(":{"auth":")",
                     absl::Base64Escape(absl::StrCat(kUser, ":", kPassword)),
                     R"("}}})"));
    auto [code, output] =
        Run({"skopeo", "inspect", "--tls-verify=false", "--authfile", authfile,
             absl::StrCat("docker://", host, "/", repo, ":", tag)});
    EXPECT_EQ(code, 0) << output;
    return code == 0 ? output : "";
  }

  std::string scratch_;
  int curl_calls_ = 0;
};

TEST_F(RegistryServerTest, AnonymousRegistryServesV2AndKeepsBlobsAcrossRestart) {
  CIAGENT_START_REGISTRY(registry);
  EXPECT_EQ(registry->url(), absl::StrCat("http://", registry->host()));
  EXPECT_EQ(registry->host(), absl::StrCat("127.0.0.1:", registry->port()));
  EXPECT_EQ(registry->ca_file(), "");
  EXPECT_EQ(registry->token_requests(), 0);
  HttpResult v2 = Curl({registry->url() + "/v2/"});
  EXPECT_EQ(v2.status, 200);
  EXPECT_EQ(v2.Header("docker-distribution-api-version"), "registry/2.0");

  PushedImage image = PushSmallImage(registry->url(), "", "team/app", "1");
  const std::string blob = registry->BlobPath(image.layer_digest);
  ASSERT_NE(blob, "");
  EXPECT_THAT(blob, StartsWith(registry->storage_dir()));
  EXPECT_EQ(ReadFileOrEmpty(blob), image.layer);
  EXPECT_EQ(registry->BlobPath(
                "sha256:0000000000000000000000000000000000000000000000000000000000000000"),
            "");
  EXPECT_EQ(registry->BlobPath("not-a-digest"), "");

  // An upload begun before a restart can be finished after it.
  HttpResult started =
      Curl({"-X", "POST", registry->url() + "/v2/team/app/blobs/uploads/"});
  ASSERT_EQ(started.status, 202);
  ASSERT_OK(registry->Stop());
  EXPECT_NE(Curl({registry->url() + "/v2/"}).curl_exit, 0);
  ASSERT_OK(registry->StartAgain());
  const std::string late = WriteFile("late", "sent after the restart");
  HttpResult finished = Curl(
      {"-X", "PUT", "-H", "Content-Type: application/octet-stream",
       "--data-binary", "@" + late,
       WithParam("", started.Header("location"),
                 "digest=" + Sha256Digest(late))});
  EXPECT_EQ(finished.status, 201) << finished.body;
  HttpResult head = Curl({"-I", absl::StrCat(registry->url(), "/v2/team/app/blobs/",
                                             image.layer_digest)});
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.Header("content-length"), absl::StrCat(image.layer.size()));

  // distribution logs a request just after answering it.
  const std::string last =
      absl::StrCat("HEAD /v2/team/app/blobs/", image.layer_digest, " 200\n");
  for (int i = 0; i < 100 && !absl::StrContains(registry->RequestLog(), last);
       ++i) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  const std::string log = registry->RequestLog();
  EXPECT_THAT(log, HasSubstr("GET /v2/ 200\n"));
  EXPECT_THAT(log, HasSubstr("PUT /v2/team/app/manifests/1 201\n"));
  EXPECT_THAT(log, HasSubstr(last));
}

TEST_F(RegistryServerTest, BasicAuthRegistryWantsCredentials) {
  CIAGENT_START_REGISTRY(registry, {.auth = Auth::kBasic});
  HttpResult anonymous = Curl({registry->url() + "/v2/"});
  EXPECT_EQ(anonymous.status, 401);
  EXPECT_EQ(anonymous.Header("www-authenticate"),
            "Basic realm=\"ciagent-test-registry\"");
  EXPECT_EQ(Curl({"-K", BasicAuthConfig(), registry->url() + "/v2/"}).status,
            200);
  const std::string wrong = WriteFile("wrong.curlrc", "user = \"ci:nope\"\n");
  EXPECT_EQ(Curl({"-K", wrong, registry->url() + "/v2/"}).status, 401);

  PushedImage image =
      PushSmallImage(registry->url(), BasicAuthConfig(), "app", "v1");
  EXPECT_THAT(SkopeoInspect(registry->host(), "app", "v1"),
              HasSubstr(image.manifest_digest));
  // The htpasswd file holds a hash; the password is in no config.
  EXPECT_THAT(ReadFileOrEmpty(registry->storage_dir() + "/../config.yml"),
              Not(HasSubstr(kPassword)));
}

TEST_F(RegistryServerTest, TokenFromTheRealmIsAcceptedForAPush) {
  CIAGENT_START_REGISTRY(registry, {.auth = Auth::kToken});
  HttpResult challenge = Curl({registry->url() + "/v2/"});
  EXPECT_EQ(challenge.status, 401);
  const std::string header = challenge.Header("www-authenticate");
  ASSERT_THAT(header, StartsWith("Bearer realm=\"http://127.0.0.1:"));
  EXPECT_THAT(header, HasSubstr("service=\"ciagent-test-registry\""));
  const std::string realm =
      header.substr(14, header.find('"', 14) - 14);  // after `Bearer realm="`

  // Without credentials the realm refuses.
  EXPECT_EQ(Curl({realm + "?service=ciagent-test-registry"}).status, 401);

  HttpResult answer = Curl({"-K", BasicAuthConfig(),
                            realm +
                                "?service=ciagent-test-registry"
                                "&scope=repository:app:pull,push"});
  EXPECT_EQ(answer.status, 200);
  EXPECT_THAT(answer.body, HasSubstr("\"expires_in\": 300"));
  EXPECT_THAT(answer.body, HasSubstr("\"access_token\": \""));
  const std::string token =
      FetchToken(realm +
                 "?service=ciagent-test-registry"
                 "&scope=repository:app:pull,push");
  ASSERT_FALSE(token.empty());
  PushedImage image =
      PushSmallImage(registry->url(), BearerConfig(token), "app", "1.0");
  EXPECT_EQ(ReadFileOrEmpty(registry->BlobPath(image.layer_digest)),
            image.layer);

  // A token for another repository is not enough.
  const std::string other = FetchToken(
      realm + "?service=ciagent-test-registry&scope=repository:other:pull");
  EXPECT_EQ(Curl({"-K", BearerConfig(other), "-X", "POST",
                  registry->url() + "/v2/app/blobs/uploads/"})
                .status,
            401);

  EXPECT_THAT(SkopeoInspect(registry->host(), "app", "1.0"),
              HasSubstr(image.manifest_digest));
  EXPECT_GE(registry->token_requests(), 4);
  EXPECT_THAT(registry->RequestLog(), HasSubstr("PUT /v2/app/manifests/1.0 201"));
}

TEST_F(RegistryServerTest, TokenAnswerCanOmitExpiresInAsGiteaDoes) {
  CIAGENT_START_REGISTRY(registry, {.auth = Auth::kToken,
                                    .token_omit_expires_in = true});
  const std::string header =
      Curl({registry->url() + "/v2/"}).Header("www-authenticate");
  const std::string realm = header.substr(14, header.find('"', 14) - 14);
  HttpResult answer = Curl(
      {"-K", BasicAuthConfig(),
       realm + "?service=ciagent-test-registry&scope=repository%3Aapp%3Apull"
               "%20repository%3Abase%3Apull"});
  EXPECT_EQ(answer.status, 200);
  EXPECT_THAT(answer.body, HasSubstr("\"token\""));
  EXPECT_THAT(answer.body, Not(HasSubstr("expires_in")));
  const std::string token = FetchToken(
      realm + "?service=ciagent-test-registry&scope=repository:app:pull"
              "&scope=repository:base:pull");
  // Both scopes, one space-separated and one repeated, were granted pull.
  EXPECT_EQ(Curl({"-K", BearerConfig(token),
                  registry->url() + "/v2/base/tags/list"})
                .status,
            404);  // authorized; the repository just does not exist
  EXPECT_EQ(registry->token_requests(), 2);
}

TEST_F(RegistryServerTest, HttpsRegistryIsTrustedThroughItsCa) {
  CIAGENT_START_REGISTRY(registry, {.auth = Auth::kToken, .https = true});
  EXPECT_THAT(registry->url(), StartsWith("https://127.0.0.1:"));
  ASSERT_NE(registry->ca_file(), "");
  // Not trusted without the CA.
  EXPECT_NE(Curl({registry->url() + "/v2/"}).curl_exit, 0);
  HttpResult challenge =
      Curl({"--cacert", registry->ca_file(), registry->url() + "/v2/"});
  EXPECT_EQ(challenge.status, 401);
  const std::string header = challenge.Header("www-authenticate");
  ASSERT_THAT(header, StartsWith("Bearer realm=\"https://127.0.0.1:"));
  const std::string realm = header.substr(14, header.find('"', 14) - 14);
  const std::string token =
      FetchToken(realm + "?service=ciagent-test-registry&scope=repository:a:pull",
                 {"--cacert", registry->ca_file()});
  ASSERT_FALSE(token.empty());
  EXPECT_EQ(Curl({"--cacert", registry->ca_file(), "-K", BearerConfig(token),
                  registry->url() + "/v2/"})
                .status,
            200);
}

TEST_F(RegistryServerTest, FaultProxyFaultsAboutTheConfiguredRate) {
  CIAGENT_START_REGISTRY(registry);
  CIAGENT_START_FAULT_PROXY(
      proxy, {.upstream = registry->url(), .fault_rate = 0.25, .seed = 7});
  EXPECT_EQ(proxy->url(), absl::StrCat("http://", proxy->host()));
  // One curl, 200 requests over kept-alive connections. A reset on a
  // reused connection makes curl resend the request on a new one; a reset
  // on a new connection ends that transfer with status 000.
  std::vector<std::string> argv = {"curl", "-s", "--max-time", "60", "-w",
                                   "\n%{http_code}\n"};
  for (int i = 0; i < 200; ++i) argv.push_back(proxy->url() + "/v2/");
  auto [code, output] = Run(argv);
  (void)code;  // the exit code is that of the last transfer
  std::map<std::string, int> statuses;
  for (absl::string_view line : absl::StrSplit(output, '\n')) {
    if (line.size() == 3 && absl::ascii_isdigit(line[0])) {
      ++statuses[std::string(line)];
    }
  }
  EXPECT_EQ(statuses["200"] + statuses["500"] + statuses["503"] +
                statuses["429"] + statuses["000"],
            200);
  const int seen = proxy->requests_seen();
  const int resent = seen - 200;
  EXPECT_GE(resent, 0);
  EXPECT_EQ(proxy->faults_injected(), 200 - statuses["200"] + resent);
  EXPECT_THAT(proxy->faults_injected(), AllOf(Ge(seen / 8), Le(seen * 3 / 8)));
  EXPECT_GT(statuses["500"], 0);
  EXPECT_GT(statuses["503"], 0);
  EXPECT_GT(statuses["429"], 0);
  EXPECT_THAT(proxy->RequestLog(), HasSubstr("GET /v2/ reset\n"));
  EXPECT_THAT(proxy->RequestLog(), HasSubstr("GET /v2/ 200\n"));
}

TEST_F(RegistryServerTest, FaultProxySendsRetryAfterAndFaultsOnlyChosenMethods) {
  CIAGENT_START_REGISTRY(registry);
  CIAGENT_START_FAULT_PROXY(proxy, {.upstream = registry->url(),
                                    .fault_rate = 1.0,
                                    .retry_after_s = 3,
                                    .reset_connections = false,
                                    .methods = {"POST"}});
  EXPECT_EQ(Curl({proxy->url() + "/v2/"}).status, 200);
  std::map<int, int> statuses;
  for (int i = 0; i < 12; ++i) {
    HttpResult r = Curl({"-X", "POST", "--data-binary", "ignored body",
                         proxy->url() + "/v2/app/blobs/uploads/"});
    ++statuses[r.status];
    if (r.status == 503 || r.status == 429) {
      EXPECT_EQ(r.Header("retry-after"), "3");
    } else {
      EXPECT_EQ(r.status, 500);
    }
  }
  EXPECT_EQ(statuses[500] + statuses[503] + statuses[429], 12);
  EXPECT_EQ(proxy->faults_injected(), 12);
  EXPECT_EQ(proxy->requests_seen(), 13);
}

TEST_F(RegistryServerTest, FaultProxyForwardsUploadsFaithfully) {
  CIAGENT_START_REGISTRY(registry, {.auth = Auth::kBasic});
  CIAGENT_START_FAULT_PROXY(clean,
                            {.upstream = registry->url(), .fault_rate = 0});
  // The upstream's challenge passes through unchanged.
  HttpResult challenge = Curl({clean->url() + "/v2/"});
  EXPECT_EQ(challenge.status, 401);
  EXPECT_EQ(challenge.Header("www-authenticate"),
            "Basic realm=\"ciagent-test-registry\"");

  // 5 MiB in two chunked-encoded PATCHes, then the closing PUT.
  std::string blob;
  blob.reserve(5 << 20);
  for (int i = 0; blob.size() < (5u << 20); ++i) {
    absl::StrAppend(&blob, "line ", i, " of the five mebibyte blob\n");
  }
  blob.resize(5 << 20);
  const std::string first = WriteFile("first", blob.substr(0, 3 << 20));
  const std::string second = WriteFile("second", blob.substr(3 << 20));
  const std::string digest = Sha256Digest(WriteFile("blob", blob));
  const std::string auth = BasicAuthConfig();
  HttpResult started = Curl({"-K", auth, "-X", "POST",
                             clean->url() + "/v2/app/blobs/uploads/"});
  ASSERT_EQ(started.status, 202);
  // distribution builds an absolute Location; the proxy points it at itself.
  ASSERT_THAT(started.Header("location"), StartsWith(clean->url() + "/v2/"));
  HttpResult patched =
      Curl({"-K", auth, "-X", "PATCH", "-H", "Transfer-Encoding: chunked",
            "-H", "Content-Type: application/octet-stream", "--data-binary",
            "@" + first, started.Header("location")});
  ASSERT_EQ(patched.status, 202) << patched.body;
  EXPECT_EQ(patched.Header("range"), absl::StrCat("0-", (3 << 20) - 1));
  patched = Curl({"-K", auth, "-X", "PATCH", "-H",
                  "Content-Type: application/octet-stream", "-H",
                  absl::StrCat("Content-Range: ", 3 << 20, "-",
                               (5 << 20) - 1),
                  "--data-binary", "@" + second, patched.Header("location")});
  ASSERT_EQ(patched.status, 202) << patched.body;
  HttpResult done = Curl({"-K", auth, "-X", "PUT", "-H",
                          "Content-Type: application/octet-stream",
                          WithParam("", patched.Header("location"),
                                    "digest=" + digest)});
  ASSERT_EQ(done.status, 201) << done.body;
  EXPECT_EQ(ReadFileOrEmpty(registry->BlobPath(digest)), blob);
  HttpResult head = Curl(
      {"-K", auth, "-I", absl::StrCat(clean->url(), "/v2/app/blobs/", digest)});
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.Header("content-length"), absl::StrCat(5 << 20));
  EXPECT_EQ(head.Header("docker-content-digest"), digest);
  HttpResult got = Curl(
      {"-K", auth, absl::StrCat(clean->url(), "/v2/app/blobs/", digest)});
  EXPECT_EQ(got.status, 200);
  EXPECT_TRUE(got.body == blob) << "downloaded blob differs";
  EXPECT_EQ(clean->faults_injected(), 0);

  // Concurrent clients, each connection with its own upstream connection.
  const int before = clean->requests_seen();
  std::vector<std::string> parallel = {"curl", "-s", "-I", "-Z",
                                       "--parallel-max", "8", "-K", auth,
                                       "-w", "\n%{http_code}\n"};
  for (int i = 0; i < 80; ++i) {
    parallel.push_back(absl::StrCat(clean->url(), "/v2/app/blobs/", digest));
  }
  auto [parallel_exit, parallel_output] = Run(parallel);
  EXPECT_EQ(parallel_exit, 0);
  int ok = 0;
  for (absl::string_view line : absl::StrSplit(parallel_output, '\n')) {
    if (line == "200") ++ok;
  }
  EXPECT_EQ(ok, 80);
  EXPECT_EQ(clean->requests_seen() - before, 80);

  // Through a faulty proxy a 5 MiB monolithic upload gets through after
  // retries, each retry with a fresh upload session.
  CIAGENT_START_FAULT_PROXY(
      faulty, {.upstream = registry->url(), .fault_rate = 0.3, .seed = 3});
  const std::string blob_file = Scratch("blob");
  int attempts = 0;
  int status = 0;
  while (status != 201 && attempts < 30) {
    ++attempts;
    HttpResult post = Curl({"-K", auth, "-X", "POST",
                            faulty->url() + "/v2/copy/blobs/uploads/"});
    if (post.status != 202) continue;
    EXPECT_THAT(post.Header("location"), StartsWith(faulty->url()));
    status = Curl({"-K", auth, "-X", "PUT", "-H",
                   "Content-Type: application/octet-stream", "--data-binary",
                   "@" + blob_file,
                   WithParam("", post.Header("location"), "digest=" + digest)})
                 .status;
  }
  EXPECT_EQ(status, 201) << faulty->RequestLog();
  EXPECT_GT(faulty->requests_seen(), 0);
  HttpResult copied = Curl(
      {"-K", auth, "-I", absl::StrCat(clean->url(), "/v2/copy/blobs/", digest)});
  EXPECT_EQ(copied.status, 200);
}

TEST_F(RegistryServerTest, QuirksRegistryBehavesLikeGitea) {
  CIAGENT_START_QUIRKS_REGISTRY(registry);
  const std::string base = registry->url();
  EXPECT_EQ(base, absl::StrCat("http://", registry->host()));
  HttpResult challenge = Curl({base + "/v2/"});
  EXPECT_EQ(challenge.status, 401);
  EXPECT_EQ(challenge.Header("www-authenticate"),
            absl::StrCat("Bearer realm=\"", base,
                         "/v2/token\",service=\"container_registry\","
                         "scope=\"*\""));
  EXPECT_THAT(challenge.body, HasSubstr("\"UNAUTHORIZED\""));
  EXPECT_EQ(Curl({base + "/v2/token?service=container_registry"}).status, 401);
  HttpResult answer = Curl({"-K", BasicAuthConfig(),
                            base + "/v2/token?service=container_registry"
                                   "&scope=repository:app:pull,push"});
  EXPECT_EQ(answer.status, 200);
  EXPECT_THAT(answer.body, Not(HasSubstr("expires_in")));
  EXPECT_THAT(answer.body, Not(HasSubstr("access_token")));
  const std::string token = FetchToken(base + "/v2/token");
  ASSERT_FALSE(token.empty());
  const std::string auth = BearerConfig(token);
  EXPECT_EQ(Curl({"-K", auth, base + "/v2/"}).status, 200);

  // A chunked upload: relative Locations without a query.
  HttpResult started =
      Curl({"-K", auth, "-X", "POST", base + "/v2/app/blobs/uploads/"});
  ASSERT_EQ(started.status, 202);
  const std::string location = started.Header("location");
  ASSERT_THAT(location, StartsWith("/v2/app/blobs/uploads/"));
  EXPECT_THAT(location, Not(HasSubstr("?")));
  const std::string blob = "0123456789abcdefghij";
  const std::string digest = Sha256Digest(WriteFile("blob", blob));
  HttpResult patched = Curl({"-K", auth, "-X", "PATCH", "--data-binary",
                             blob.substr(0, 8), base + location});
  ASSERT_EQ(patched.status, 202);  // a first write may lack Content-Range
  EXPECT_EQ(patched.Header("range"), "0-7");
  EXPECT_EQ(patched.Header("location"), location);
  HttpResult refused = Curl({"-K", auth, "-X", "PATCH", "--data-binary",
                             blob.substr(8, 4), base + location});
  EXPECT_EQ(refused.status, 416);
  EXPECT_THAT(refused.body, HasSubstr("BLOB_UPLOAD_INVALID"));
  HttpResult misplaced =
      Curl({"-K", auth, "-X", "PATCH", "-H", "Content-Range: 4-7",
            "--data-binary", blob.substr(4, 4), base + location});
  EXPECT_EQ(misplaced.status, 416);
  EXPECT_EQ(misplaced.Header("range"), "0-7");
  HttpResult resumed =
      Curl({"-K", auth, "-X", "PATCH", "-H", "Content-Range: 8-15",
            "--data-binary", blob.substr(8, 8), base + location});
  EXPECT_EQ(resumed.status, 202);
  EXPECT_EQ(resumed.Header("range"), "0-15");
  HttpResult status = Curl({"-K", auth, base + location});
  EXPECT_EQ(status.status, 204);
  EXPECT_EQ(status.Header("range"), "0-15");
  HttpResult wrong = Curl(
      {"-K", auth, "-X", "PUT", "--data-binary", blob.substr(16),
       absl::StrCat(base, location, "?digest=sha256:",
                    std::string(64, 'a'))});
  EXPECT_EQ(wrong.status, 400);
  EXPECT_THAT(wrong.body, HasSubstr("DIGEST_INVALID"));
  // The mismatched PUT appended its piece; start over with a new upload.
  started = Curl({"-K", auth, "-X", "POST", base + "/v2/app/blobs/uploads/"});
  HttpResult finished =
      Curl({"-K", auth, "-X", "PUT", "-H", "Content-Range: 0-19",
            "--data-binary", blob,
            absl::StrCat(base, started.Header("location"), "?digest=",
                         digest)});
  EXPECT_EQ(finished.status, 201) << finished.body;
  EXPECT_EQ(finished.Header("docker-content-digest"), digest);
  HttpResult head =
      Curl({"-K", auth, "-I", absl::StrCat(base, "/v2/app/blobs/", digest)});
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.Header("content-length"), "20");

  // Mounts: from a repository holding the blob → 201, else a new upload.
  HttpResult mounted =
      Curl({"-K", auth, "-X", "POST",
            absl::StrCat(base, "/v2/other/blobs/uploads/?mount=", digest,
                         "&from=app")});
  EXPECT_EQ(mounted.status, 201);
  HttpResult not_mounted =
      Curl({"-K", auth, "-X", "POST",
            absl::StrCat(base, "/v2/third/blobs/uploads/?mount=", digest,
                         "&from=nowhere")});
  EXPECT_EQ(not_mounted.status, 202);
  EXPECT_THAT(not_mounted.Header("location"),
              StartsWith("/v2/third/blobs/uploads/"));

  // A manifest naming a missing layer is refused; a complete one is kept.
  const std::string missing = absl::StrCat(
      R"({"schemaVersion":2,"mediaType":")", kOciManifest,
      R"(","config":{"mediaType":"application/vnd.oci.image.config.v1+json",)",
      R"("digest":")", digest, R"(","size":20},"layers":[{"mediaType":)",
      R"("application/vnd.oci.image.layer.v1.tar","digest":"sha256:)",
      std::string(64, 'b'), R"(","size":1}]})");
  HttpResult refused_manifest =
      Curl({"-K", auth, "-X", "PUT", "-H",
            absl::StrCat("Content-Type: ", kOciManifest), "--data-binary",
            missing, base + "/v2/app/manifests/v1"});
  EXPECT_EQ(refused_manifest.status, 400);
  EXPECT_THAT(refused_manifest.body, HasSubstr("MANIFEST_BLOB_UNKNOWN"));

  PushedImage image = PushSmallImage(base, auth, "team/app", "v1");
  HttpResult manifest = Curl(
      {"-K", auth, "-H", absl::StrCat("Accept: ", kOciManifest),
       base + "/v2/team/app/manifests/v1"});
  EXPECT_EQ(manifest.status, 200);
  EXPECT_EQ(manifest.Header("content-type"), kOciManifest);
  EXPECT_EQ(manifest.Header("docker-content-digest"), image.manifest_digest);
  EXPECT_EQ(Sha256Digest(WriteFile("got-manifest", manifest.body)),
            image.manifest_digest);
  HttpResult tags = Curl({"-K", auth, base + "/v2/team/app/tags/list"});
  EXPECT_EQ(tags.body, R"({"name": "team/app", "tags": ["v1"]})");
  EXPECT_THAT(SkopeoInspect(registry->host(), "team/app", "v1"),
              HasSubstr(image.manifest_digest));

  const std::string log = registry->RequestLog();
  EXPECT_THAT(log, HasSubstr("GET /v2/ 401\n"));
  EXPECT_THAT(log, HasSubstr(absl::StrCat("PATCH ", location, " 416\n")));
  EXPECT_THAT(log, HasSubstr("PUT /v2/team/app/manifests/v1 201\n"));
  EXPECT_THAT(log, Not(HasSubstr(token)));
  EXPECT_THAT(log, Not(HasSubstr(kPassword)));
}

TEST_F(RegistryServerTest, QuirksRegistryCanRefuseStreamPatchesWith400) {
  CIAGENT_START_QUIRKS_REGISTRY(registry, {.stream_patch_status = 400});
  const std::string auth =
      BearerConfig(FetchToken(registry->url() + "/v2/token"));
  HttpResult started = Curl(
      {"-K", auth, "-X", "POST", registry->url() + "/v2/app/blobs/uploads/"});
  ASSERT_EQ(started.status, 202);
  const std::string upload = registry->url() + started.Header("location");
  EXPECT_EQ(Curl({"-K", auth, "-X", "PATCH", "--data-binary", "ab", upload})
                .status,
            202);
  HttpResult refused =
      Curl({"-K", auth, "-X", "PATCH", "--data-binary", "cd", upload});
  EXPECT_EQ(refused.status, 400);
  EXPECT_THAT(refused.body, HasSubstr("BLOB_UPLOAD_INVALID"));
}

}  // namespace
}  // namespace ciagent::testing
