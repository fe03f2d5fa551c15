// The registry client against real services: distribution with each auth
// mode and over HTTPS, behind a fault-injecting proxy, and a registry with
// Gitea's quirks.
#include "ciagent/oci/registry_client.h"

#include <filesystem>
#include <fstream>
#include <iterator>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "ciagent/oci/manifest.h"
#include "ciagent/oci/push.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/oci_layout.h"
#include "testing/registry_server.h"
#include "testing/status_matchers.h"

namespace ciagent::oci {
namespace {

using ::ciagent::testing::InspectDigest;
using ::ciagent::testing::IsOkAndHolds;
using ::ciagent::testing::MakeOciLayout;
using ::ciagent::testing::RegistryServerOptions;
using ::ciagent::testing::StatusIs;
using ::ciagent::testing::TestLayout;
using ::testing::HasSubstr;
using ::testing::Not;
using Auth = RegistryServerOptions::Auth;

class RegistryClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/registry-client-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }

  TestLayout Layout(::ciagent::testing::LayoutSpec spec = {}) {
    auto layout = MakeOciLayout(dir_ + "/layout", spec);
    EXPECT_TRUE(layout.ok()) << layout.status();
    return layout.ok() ? *layout : TestLayout{};
  }

  static std::unique_ptr<RegistryClient> Client(RegistryOptions options) {
    options.backoff = {.initial = absl::Milliseconds(50),
                       .max = absl::Milliseconds(500)};
    auto client = RegistryClient::Create(std::move(options));
    EXPECT_TRUE(client.ok()) << client.status();
    return *std::move(client);
  }

  std::string dir_;
};

TEST_F(RegistryClientTest, PushesWithBasicAuth) {
  CIAGENT_START_REGISTRY(registry, {.auth = Auth::kBasic});
  TestLayout layout = Layout();
  auto client = Client({.registry = registry->url(),
                        .username = "ci",
                        .password = registry->options().password});
  ASSERT_OK(client->Ping());
  ASSERT_OK(PushLayout(*client, layout.dir,
                       {.repository = "owner/app", .tags = {"v1"}}));
  EXPECT_THAT(InspectDigest(
                  registry->host() + "/owner/app:v1",
                  {.username = "ci", .password = registry->options().password}),
              IsOkAndHolds(layout.root_digest));
}

TEST_F(RegistryClientTest, WrongPasswordIsUnauthenticatedFastAndNeverShown) {
  CIAGENT_START_REGISTRY(registry, {.auth = Auth::kBasic});
  auto client = Client({.registry = registry->url(),
                        .username = "ci",
                        .password = "wrong-password-1234"});
  const absl::Time start = absl::Now();
  absl::Status status = client->Ping();
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  EXPECT_THAT(std::string(status.message()), Not(HasSubstr("wrong-password")));
}

TEST_F(RegistryClientTest, MissingCredentialsSayWhatToSet) {
  CIAGENT_START_REGISTRY(registry, {.auth = Auth::kBasic});
  auto client = Client({.registry = registry->url()});
  EXPECT_THAT(client->Ping(), StatusIs(absl::StatusCode::kUnauthenticated,
                                       HasSubstr("REGISTRY_TOKEN")));
}

TEST_F(RegistryClientTest, PushesWithBearerTokensFromTheRealm) {
  CIAGENT_START_REGISTRY(registry, {.auth = Auth::kToken});
  TestLayout layout = Layout({.layers = 3});
  auto client = Client({.registry = registry->url(),
                        .username = "ci",
                        .password = registry->options().password});
  ASSERT_OK_AND_ASSIGN(PushResult pushed,
                       PushLayout(*client, layout.dir,
                                  {.repository = "owner/app", .tags = {"v1"}}));
  EXPECT_EQ(pushed.digest, layout.root_digest);
  // One token serves the whole push, whatever the parallelism.
  EXPECT_EQ(client->stats().token_fetches, 1);
  EXPECT_THAT(InspectDigest(
                  registry->host() + "/owner/app:v1",
                  {.username = "ci", .password = registry->options().password}),
              IsOkAndHolds(layout.root_digest));
}

TEST_F(RegistryClientTest, BearerTokenWithoutExpiresInIsRenewed) {
  // Gitea sends no expires_in: the spec's 60 s apply, renewed at 80 %.
  CIAGENT_START_REGISTRY(registry,
                         {.auth = Auth::kToken, .token_expires_in_s = 2});
  TestLayout layout = Layout();
  auto client = Client({.registry = registry->url(),
                        .username = "ci",
                        .password = registry->options().password});
  ASSERT_OK(PushLayout(*client, layout.dir,
                       {.repository = "owner/app", .tags = {"v1"}}));
  const int64_t fetches = client->stats().token_fetches;
  absl::SleepFor(absl::Seconds(2.5));  // the token has expired
  ASSERT_OK(PushLayout(*client, layout.dir,
                       {.repository = "owner/app", .tags = {"v2"}}));
  EXPECT_GT(client->stats().token_fetches, fetches);
}

TEST_F(RegistryClientTest, WrongTokenCredentialsAreUnauthenticated) {
  CIAGENT_START_REGISTRY(registry, {.auth = Auth::kToken});
  auto client = Client({.registry = registry->url(),
                        .username = "ci",
                        .password = "not-the-token-5678"});
  absl::StatusOr<bool> exists =
      client->BlobExists("owner/app", "sha256:" + std::string(64, 'a'));
  EXPECT_THAT(exists, StatusIs(absl::StatusCode::kUnauthenticated,
                               HasSubstr("token request")));
  EXPECT_THAT(std::string(exists.status().message()),
              Not(HasSubstr("not-the-token")));
}

TEST_F(RegistryClientTest, HttpsNeedsTheCaFile) {
  CIAGENT_START_REGISTRY(registry, {.auth = Auth::kToken, .https = true});
  TestLayout layout = Layout();
  auto trusting = Client({.registry = registry->url(),
                          .username = "ci",
                          .password = registry->options().password,
                          .ca_file = registry->ca_file()});
  ASSERT_OK(PushLayout(*trusting, layout.dir,
                       {.repository = "owner/app", .tags = {"v1"}}));
  EXPECT_THAT(InspectDigest(registry->host() + "/owner/app:v1",
                            {.username = "ci",
                             .password = registry->options().password,
                             .ca_file = registry->ca_file()}),
              IsOkAndHolds(layout.root_digest));

  auto untrusting = Client({.registry = registry->url(),
                            .username = "ci",
                            .password = registry->options().password});
  EXPECT_THAT(untrusting->Ping(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(RegistryClientTest, PushSurvivesFaultsAndResets) {
  CIAGENT_START_REGISTRY(registry);
  CIAGENT_START_FAULT_PROXY(proxy, {.upstream = registry->url(),
                                    .fault_rate = 0.3,
                                    .seed = 7,
                                    .retry_after_s = 1});
  TestLayout layout = Layout({.layers = 6, .layer_bytes = 512 << 10});
  auto client = Client({.registry = proxy->url(), .max_attempts = 8});
  ASSERT_OK_AND_ASSIGN(PushResult pushed,
                       PushLayout(*client, layout.dir,
                                  {.repository = "owner/app", .tags = {"v1"}}));
  EXPECT_EQ(pushed.digest, layout.root_digest);
  EXPECT_GT(proxy->faults_injected(), 0) << proxy->RequestLog();
  EXPECT_GT(client->stats().retries, 0);
  EXPECT_THAT(InspectDigest(registry->host() + "/owner/app:v1", {}),
              IsOkAndHolds(layout.root_digest));
}

TEST_F(RegistryClientTest, ChunkedUploadSurvivesFaults) {
  CIAGENT_START_REGISTRY(registry);
  CIAGENT_START_FAULT_PROXY(proxy, {.upstream = registry->url(),
                                    .fault_rate = 0.25,
                                    .seed = 3,
                                    .methods = {"PATCH", "PUT"}});
  TestLayout layout = Layout({.layers = 2, .layer_bytes = 1 << 20});
  auto client = Client(
      {.registry = proxy->url(), .max_attempts = 8, .chunk_bytes = 128 << 10});
  ASSERT_OK(PushLayout(*client, layout.dir,
                       {.repository = "owner/app", .tags = {"v1"}}));
  EXPECT_GT(proxy->faults_injected(), 0);
  EXPECT_THAT(InspectDigest(registry->host() + "/owner/app:v1", {}),
              IsOkAndHolds(layout.root_digest));
}

TEST_F(RegistryClientTest, RegistryDownIsUnavailableNamingTheBlob) {
  CIAGENT_START_REGISTRY(registry);
  TestLayout layout = Layout();
  const std::string url = registry->url();
  ASSERT_OK(registry->Stop());
  auto client = Client({.registry = url, .max_attempts = 3});
  absl::StatusOr<PushResult> pushed = PushLayout(
      *client, layout.dir, {.repository = "owner/app", .tags = {"v1"}});
  EXPECT_THAT(pushed, StatusIs(absl::StatusCode::kUnavailable,
                               HasSubstr("after 3 attempts")));
  EXPECT_THAT(pushed.status().message(), HasSubstr(registry->host()));
}

TEST_F(RegistryClientTest, GiteaQuirksMonolithicAndChunked) {
  CIAGENT_START_QUIRKS_REGISTRY(gitea);
  TestLayout layout = Layout({.layers = 2, .layer_bytes = 300 << 10});
  for (uint64_t chunk : {uint64_t{0}, uint64_t{100} << 10}) {
    SCOPED_TRACE(chunk == 0 ? "monolithic" : "chunked");
    auto client = Client({.registry = gitea->url(),
                          .username = "ci",
                          .password = "s3cret-registry-pass",
                          .chunk_bytes = chunk});
    const std::string tag = chunk == 0 ? "mono" : "chunked";
    ASSERT_OK_AND_ASSIGN(
        PushResult pushed,
        PushLayout(*client, layout.dir,
                   {.repository = "owner/" + tag, .tags = {tag}}));
    EXPECT_EQ(pushed.blobs_uploaded, 3);
    EXPECT_THAT(client->ManifestDigest("owner/" + tag, tag),
                IsOkAndHolds(layout.root_digest));
  }
  const std::string log = gitea->RequestLog();
  EXPECT_THAT(log, HasSubstr("PATCH /v2/owner/chunked/blobs/uploads/"));
  EXPECT_THAT(log, Not(HasSubstr(" 416")));
  EXPECT_THAT(log, Not(HasSubstr("s3cret")));
}

// Pulls: what was pushed comes back byte for byte, by tag and by digest,
// blobs in Range requests through token auth; a blob changed in the
// registry's storage is refused and leaves no file.
TEST_F(RegistryClientTest, PullsWhatWasPushedAndRefusesAChangedBlob) {
  CIAGENT_START_REGISTRY(registry, {.auth = Auth::kToken});
  TestLayout layout = Layout({.layers = 1, .layer_bytes = 3 << 20});
  auto client = Client({.registry = registry->url(),
                        .username = "ci",
                        .password = registry->options().password,
                        .download_range_bytes = 1 << 20});
  ASSERT_OK(PushLayout(*client, layout.dir,
                       {.repository = "owner/app", .tags = {"v1"}}));
  ASSERT_OK_AND_ASSIGN(ManifestDocument by_tag,
                       client->GetManifest("owner/app", "v1"));
  EXPECT_EQ(by_tag.digest, layout.root_digest);
  EXPECT_EQ(by_tag.media_type, kOciManifest);
  ASSERT_OK_AND_ASSIGN(ManifestDocument by_digest,
                       client->GetManifest("owner/app", layout.root_digest));
  EXPECT_EQ(by_digest.bytes, by_tag.bytes);
  EXPECT_THAT(client->GetManifest("owner/app", "v2"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("MANIFEST_UNKNOWN")));

  ASSERT_OK_AND_ASSIGN(Manifest manifest, ParseManifest(by_tag.bytes));
  ASSERT_EQ(manifest.layers.size(), 1u);
  const Descriptor& layer = manifest.layers[0];
  ASSERT_GT(layer.size, 2 << 20);  // several ranges
  const BlobFile wanted{.digest = layer.digest,
                        .size = static_cast<uint64_t>(layer.size),
                        .path = dir_ + "/pulled-layer"};
  ASSERT_OK(client->DownloadBlob("owner/app", wanted));
  const auto read = [](const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  EXPECT_TRUE(read(wanted.path) ==
              read(layout.dir + "/blobs/sha256/" + layer.digest.substr(7)));
  EXPECT_GE(client->stats().bytes_downloaded, layer.size);
  ASSERT_OK_AND_ASSIGN(
      std::string config,
      client->ReadBlob("owner/app", manifest.config.digest,
                       static_cast<uint64_t>(manifest.config.size)));
  EXPECT_THAT(config, HasSubstr("diff_ids"));

  // One byte changed where the registry keeps the blob.
  const std::string stored = registry->BlobPath(layer.digest);
  ASSERT_NE(stored, "");
  {
    std::fstream file(stored, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(2 << 20);
    file.put('\x5a' ^ static_cast<char>(read(stored)[2 << 20]));
  }
  const BlobFile changed{.digest = layer.digest,
                         .size = static_cast<uint64_t>(layer.size),
                         .path = dir_ + "/changed-layer"};
  EXPECT_THAT(client->DownloadBlob("owner/app", changed),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("received content sha256:")));
  EXPECT_FALSE(std::filesystem::exists(changed.path));
}

}  // namespace
}  // namespace ciagent::oci
