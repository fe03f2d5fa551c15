// The client's auth, retry and upload logic against scripted answers. The
// real proof is registry_client_test.cc, against a real registry; these
// pin down the cases a real registry cannot be made to show on demand.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "ciagent/base/sha256.h"
#include "ciagent/oci/registry_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace ciagent::oci {
namespace {

using ::ciagent::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::string HeaderOf(const HttpRequest& request, absl::string_view name) {
  for (const auto& [key, value] : request.headers) {
    if (absl::EqualsIgnoreCase(key, name)) return value;
  }
  return "";
}

struct Sent {
  std::string method;
  std::string url;
  std::string authorization;
  std::string body;
};

// Answers each request with `handler` and records it, reading a streamed
// body to the end as curl would (a body error aborts the request).
class ScriptedTransport : public HttpTransport {
 public:
  std::function<HttpResponse(const HttpRequest&, const std::string& body)>
      handler;

  absl::StatusOr<HttpResponse> Send(const HttpRequest& request) override {
    std::string body = request.body;
    if (request.body_stream != nullptr) {
      if (absl::Status s = request.body_stream->Rewind(); !s.ok()) return s;
      char buffer[4096];
      for (;;) {
        absl::StatusOr<size_t> n =
            request.body_stream->Read(buffer, sizeof(buffer));
        if (!n.ok()) return absl::AbortedError(n.status().message());
        if (*n == 0) break;
        body.append(buffer, *n);
      }
    }
    {
      absl::MutexLock lock(&mu_);
      sent_.push_back({request.method, request.url,
                       HeaderOf(request, "Authorization"), body});
    }
    return handler(request, body);
  }

  std::vector<Sent> sent() {
    absl::MutexLock lock(&mu_);
    return sent_;
  }

 private:
  absl::Mutex mu_;
  std::vector<Sent> sent_;
};

HttpResponse Answer(int status, HttpHeaders headers = {},
                    std::string body = "") {
  return {.status = status, .headers = std::move(headers), .body = body};
}

class RegistryClientUnitTest : public ::testing::Test {
 protected:
  std::unique_ptr<RegistryClient> MakeClient(RegistryOptions options = {}) {
    if (options.registry.empty()) options.registry = "https://reg.example";
    options.transport = &transport_;
    options.backoff = {.initial = absl::Milliseconds(1),
                       .max = absl::Milliseconds(5)};
    auto client = RegistryClient::Create(options);
    EXPECT_TRUE(client.ok()) << client.status();
    return *std::move(client);
  }

  // A blob file with `content`; returns its BlobFile.
  BlobFile WriteBlob(const std::string& content) {
    const std::string path =
        ::testing::TempDir() + "/blob-" + std::to_string(counter_++);
    FILE* f = std::fopen(path.c_str(), "wb");
    std::fwrite(content.data(), 1, content.size(), f);
    std::fclose(f);
    return {.digest = "sha256:" + Sha256Hex(content),
            .size = content.size(),
            .path = path};
  }

  ScriptedTransport transport_;
  int counter_ = 0;
};

TEST_F(RegistryClientUnitTest, BearerTokenIsFetchedWithCredentialsAndCached) {
  transport_.handler = [](const HttpRequest& r, const std::string&) {
    if (absl::StartsWith(r.url, "https://auth.example/token")) {
      return Answer(200, {}, R"({"token":"tok-1","expires_in":300})");
    }
    if (HeaderOf(r, "Authorization") != "Bearer tok-1") {
      return Answer(
          401,
          {{"www-authenticate",
            R"(Bearer realm="https://auth.example/token",service="reg")"}});
    }
    return Answer(404);
  };
  auto client = MakeClient({.username = "ci", .password = "s3cret"});
  EXPECT_THAT(client->BlobExists("owner/app", "sha256:" + std::string(64, 'a')),
              ::ciagent::testing::IsOkAndHolds(false));
  EXPECT_THAT(client->BlobExists("owner/app", "sha256:" + std::string(64, 'b')),
              ::ciagent::testing::IsOkAndHolds(false));
  std::vector<Sent> sent = transport_.sent();
  ASSERT_EQ(sent.size(), 4u);  // ping, token, HEAD, HEAD
  EXPECT_EQ(sent[0].url, "https://reg.example/v2/");
  EXPECT_EQ(sent[1].url,
            "https://auth.example/"
            "token?service=reg&scope=repository%3Aowner%2Fapp%3Apull%2Cpush");
  EXPECT_EQ(sent[1].authorization, "Basic Y2k6czNjcmV0");  // ci:s3cret
  EXPECT_EQ(sent[2].authorization, "Bearer tok-1");
  EXPECT_EQ(sent[3].authorization, "Bearer tok-1");
  EXPECT_EQ(client->stats().token_fetches, 1);
}

TEST_F(RegistryClientUnitTest, InsufficientScopeMergesScopesAndRefetches) {
  transport_.handler = [](const HttpRequest& r, const std::string&) {
    if (absl::StartsWith(r.url, "https://reg.example/token")) {
      const bool both = absl::StrContains(r.url, "repository%3Abase%3Apull");
      return Answer(200, {},
                    both ? R"({"token":"wide"})" : R"({"token":"narrow"})");
    }
    const std::string auth = HeaderOf(r, "Authorization");
    if (auth == "Bearer wide") return Answer(201);
    return Answer(
        401,
        {{"www-authenticate",
          R"(Bearer realm="https://reg.example/token",service="reg",scope="repository:base:pull",error="insufficient_scope")"}});
  };
  auto client = MakeClient({.username = "ci", .password = "pw"});
  EXPECT_THAT(client->MountBlob("owner/app", "sha256:" + std::string(64, 'c'),
                                "owner/other"),
              ::ciagent::testing::IsOkAndHolds(true));
  std::vector<Sent> sent = transport_.sent();
  EXPECT_EQ(sent.back().authorization, "Bearer wide");
}

TEST_F(RegistryClientUnitTest, RetriesServerErrorsThenGivesUpUnavailable) {
  transport_.handler = [](const HttpRequest& r, const std::string&) {
    if (absl::EndsWith(r.url, "/v2/")) return Answer(200);
    return Answer(
        503, {},
        R"({"errors":[{"code":"UNAVAILABLE","message":"try later"}]})");
  };
  auto client = MakeClient({.max_attempts = 3});
  absl::StatusOr<bool> exists =
      client->BlobExists("owner/app", "sha256:" + std::string(64, 'a'));
  EXPECT_THAT(exists, StatusIs(absl::StatusCode::kUnavailable,
                               HasSubstr("HTTP 503 from reg.example after 3 "
                                         "attempts: UNAVAILABLE: try later")));
  EXPECT_THAT(exists.status().message(), HasSubstr("sha256:aaaaaaaaaaaa"));
  EXPECT_EQ(transport_.sent().size(), 4u);  // ping + 3
}

TEST_F(RegistryClientUnitTest, HonoursRetryAfter) {
  int calls = 0;
  transport_.handler = [&calls](const HttpRequest& r, const std::string&) {
    if (absl::EndsWith(r.url, "/v2/")) return Answer(200);
    return ++calls == 1 ? Answer(429, {{"retry-after", "1"}}) : Answer(200);
  };
  auto client = MakeClient();
  const absl::Time start = absl::Now();
  EXPECT_THAT(client->BlobExists("owner/app", "sha256:" + std::string(64, 'a')),
              ::ciagent::testing::IsOkAndHolds(true));
  // The backoff alone would have waited 5 ms at most.
  EXPECT_GE(absl::Now() - start, absl::Seconds(1));
}

TEST_F(RegistryClientUnitTest, DoesNotRetryClientErrors) {
  transport_.handler = [](const HttpRequest& r, const std::string&) {
    if (absl::EndsWith(r.url, "/v2/")) return Answer(200);
    return Answer(
        400, {},
        R"({"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry"}]})");
  };
  auto client = MakeClient();
  EXPECT_THAT(
      client->PutManifest("owner/app", "v1",
                          "application/vnd.oci.image.manifest.v1+json", "{}"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("MANIFEST_BLOB_UNKNOWN")));
  EXPECT_EQ(transport_.sent().size(), 2u);
}

TEST_F(RegistryClientUnitTest, BasicCredentialsRejectedIsUnauthenticated) {
  transport_.handler = [](const HttpRequest&, const std::string&) {
    return Answer(401, {{"www-authenticate", R"(Basic realm="Registry")"}});
  };
  auto client = MakeClient({.username = "ci", .password = "wrong-password"});
  absl::Status status = client->Ping();
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kUnauthenticated,
                               HasSubstr("rejected the credentials")));
  EXPECT_THAT(std::string(status.message()), Not(HasSubstr("wrong-password")));
}

TEST_F(RegistryClientUnitTest, UploadFollowsRelativeLocationWithoutQuery) {
  transport_.handler = [](const HttpRequest& r, const std::string&) {
    if (absl::EndsWith(r.url, "/v2/")) return Answer(200);
    if (r.method == "POST") {
      return Answer(202, {{"location", "/v2/owner/app/blobs/uploads/u-1"}});
    }
    return Answer(201);
  };
  auto client = MakeClient();
  BlobFile blob = WriteBlob("layer bytes");
  ASSERT_OK(client->UploadBlob("owner/app", blob));
  std::vector<Sent> sent = transport_.sent();
  ASSERT_EQ(sent.size(), 3u);
  EXPECT_EQ(sent[2].method, "PUT");
  EXPECT_EQ(
      sent[2].url,
      "https://reg.example/v2/owner/app/blobs/uploads/u-1?digest=sha256%3A" +
          blob.digest.substr(7));
  EXPECT_EQ(sent[2].body, "layer bytes");
  EXPECT_EQ(client->stats().bytes_uploaded, 11);
}

TEST_F(RegistryClientUnitTest, SendsNoAuthorizationToAnotherHost) {
  transport_.handler = [](const HttpRequest& r, const std::string&) {
    if (absl::EndsWith(r.url, "/v2/")) {
      return Answer(401, {{"www-authenticate", R"(Basic realm="r")"}});
    }
    if (r.method == "POST") {
      return Answer(202, {{"location", "https://storage.example/up?id=7"}});
    }
    return Answer(201);
  };
  auto client = MakeClient({.username = "ci", .password = "pw"});
  ASSERT_OK(client->UploadBlob("owner/app", WriteBlob("x")));
  std::vector<Sent> sent = transport_.sent();
  ASSERT_EQ(sent.back().method, "PUT");
  EXPECT_TRUE(absl::StartsWith(sent.back().url,
                               "https://storage.example/up?id=7&digest="));
  EXPECT_EQ(sent.back().authorization, "");
  EXPECT_NE(sent[sent.size() - 2].authorization, "");  // the POST had it
}

TEST_F(RegistryClientUnitTest, CorruptBlobIsDataLossAndNeverCompletes) {
  transport_.handler = [](const HttpRequest& r, const std::string&) {
    if (absl::EndsWith(r.url, "/v2/")) return Answer(200);
    if (r.method == "POST") return Answer(202, {{"location", "/up/1"}});
    return Answer(201);
  };
  auto client = MakeClient();
  BlobFile blob = WriteBlob("original");
  BlobFile corrupt = WriteBlob("tampered");  // same size, other content
  corrupt.digest = blob.digest;
  EXPECT_THAT(client->UploadBlob("owner/app", corrupt),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("has content")));
  for (const Sent& sent : transport_.sent()) EXPECT_NE(sent.method, "PUT");
}

TEST_F(RegistryClientUnitTest, BlobOfWrongSizeIsDataLossBeforeAnyRequest) {
  transport_.handler = [](const HttpRequest&, const std::string&) {
    return Answer(200);
  };
  auto client = MakeClient();
  BlobFile blob = WriteBlob("abc");
  blob.size = 4;
  EXPECT_THAT(client->UploadBlob("owner/app", blob),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("3 bytes")));
  EXPECT_THAT(transport_.sent(), IsEmpty());
}

TEST_F(RegistryClientUnitTest, ManifestDigestMustMatchWhatWasSent) {
  transport_.handler = [](const HttpRequest& r, const std::string&) {
    if (absl::EndsWith(r.url, "/v2/")) return Answer(200);
    return Answer(
        201, {{"docker-content-digest", "sha256:" + std::string(64, 'f')}});
  };
  auto client = MakeClient();
  EXPECT_THAT(
      client->PutManifest("owner/app", "v1",
                          "application/vnd.oci.image.manifest.v1+json", "{}"),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("stored it as")));
}

TEST(RegistryOptionsTest, PlainHttpOnlyForLoopbackUnlessWritten) {
  ScriptedTransport transport;
  auto loopback = RegistryClient::Create(
      {.registry = "127.0.0.1:5000", .transport = &transport});
  ASSERT_OK(loopback);
  EXPECT_EQ((*loopback)->base_url(), "http://127.0.0.1:5000");
  auto remote = RegistryClient::Create(
      {.registry = "git.example.com", .transport = &transport});
  ASSERT_OK(remote);
  EXPECT_EQ((*remote)->base_url(), "https://git.example.com");
  auto explicit_http = RegistryClient::Create(
      {.registry = "http://git.internal:3000/", .transport = &transport});
  ASSERT_OK(explicit_http);
  EXPECT_EQ((*explicit_http)->base_url(), "http://git.internal:3000");
  EXPECT_THAT(RegistryClient::Create({.registry = "https://u:p@reg.example"}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(RegistryClient::Create({.registry = "ftp://reg.example"}),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(MergeScopesTest, UnitesActionsPerRepository) {
  EXPECT_THAT(MergeScopes({"repository:a:push", "repository:b:pull",
                           "repository:a:pull", "registry:catalog:*"}),
              ElementsAre("registry:catalog:*", "repository:a:pull,push",
                          "repository:b:pull"));
  EXPECT_THAT(MergeScopes({"repository:x/y:pull,push", "repository:x/y:push"}),
              ElementsAre("repository:x/y:pull,push"));
}

TEST(ParseRetryAfterTest, ReadsSecondsOnly) {
  EXPECT_EQ(ParseRetryAfter("3"), absl::Seconds(3));
  EXPECT_EQ(ParseRetryAfter(" 0 "), absl::ZeroDuration());
  EXPECT_EQ(ParseRetryAfter("Wed, 21 Oct 2015 07:28:00 GMT"),
            absl::ZeroDuration());
  EXPECT_EQ(ParseRetryAfter("-5"), absl::ZeroDuration());
}

// Pulls: what a registry sends is checked, never trusted.

TEST_F(RegistryClientUnitTest, ManifestWhoseBytesDoNotMatchTheDigestIsDataLoss) {
  const std::string manifest = R"({"schemaVersion":2,"layers":[]})";
  transport_.handler = [&](const HttpRequest& r, const std::string&) {
    if (absl::EndsWith(r.url, "/v2/")) return Answer(200);
    EXPECT_THAT(HeaderOf(r, "Accept"),
                HasSubstr("application/vnd.oci.image.index.v1+json"));
    return Answer(200, {{"content-type", kOciManifest}}, manifest);
  };
  auto client = MakeClient();
  const std::string other = "sha256:" + Sha256Hex("something else");
  EXPECT_THAT(client->GetManifest("base/debian", other),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("sent content")));
  ASSERT_OK_AND_ASSIGN(ManifestDocument document,
                       client->GetManifest("base/debian", "12"));
  EXPECT_EQ(document.digest, "sha256:" + Sha256Hex(manifest));
  EXPECT_EQ(document.media_type, kOciManifest);
  EXPECT_EQ(document.bytes, manifest);
}

TEST_F(RegistryClientUnitTest, ManifestNotMatchingTheAnnouncedDigestIsDataLoss) {
  transport_.handler = [](const HttpRequest& r, const std::string&) {
    if (absl::EndsWith(r.url, "/v2/")) return Answer(200);
    return Answer(200,
                  {{"content-type", kOciManifest},
                   {"docker-content-digest", "sha256:" + Sha256Hex("x")}},
                  R"({"schemaVersion":2,"layers":[]})");
  };
  EXPECT_THAT(MakeClient()->GetManifest("base/debian", "12"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("announced")));
}

TEST_F(RegistryClientUnitTest, BlobIsDownloadedInRangesAndVerified) {
  const std::string content = "0123456789abcdefghij";  // 20 bytes
  std::vector<std::string> ranges;
  transport_.handler = [&](const HttpRequest& r, const std::string&) {
    if (absl::EndsWith(r.url, "/v2/")) return Answer(200);
    const std::string range = HeaderOf(r, "Range");
    ranges.push_back(range);
    uint64_t first = 0, last = 0;
    EXPECT_EQ(std::sscanf(range.c_str(), "bytes=%lu-%lu", &first, &last), 2);
    return Answer(206, {}, content.substr(first, last - first + 1));
  };
  auto client = MakeClient({.download_range_bytes = 8});
  const std::string path = ::testing::TempDir() + "/downloaded";
  ASSERT_OK(client->DownloadBlob(
      "base/debian", {.digest = "sha256:" + Sha256Hex(content),
                      .size = content.size(),
                      .path = path}));
  EXPECT_THAT(ranges, ElementsAre("bytes=0-7", "bytes=8-15", "bytes=16-19"));
  FILE* f = std::fopen(path.c_str(), "rb");
  ASSERT_NE(f, nullptr);
  char buffer[64] = {};
  EXPECT_EQ(std::fread(buffer, 1, sizeof(buffer), f), content.size());
  std::fclose(f);
  EXPECT_EQ(std::string(buffer, content.size()), content);
  EXPECT_EQ(client->stats().bytes_downloaded, 20);
}

TEST_F(RegistryClientUnitTest, TamperedBlobIsDataLossAndLeavesNoFile) {
  transport_.handler = [](const HttpRequest& r, const std::string&) {
    if (absl::EndsWith(r.url, "/v2/")) return Answer(200);
    return Answer(200, {}, "tampered!!");
  };
  const std::string path = ::testing::TempDir() + "/tampered";
  EXPECT_THAT(MakeClient()->DownloadBlob(
                  "base/debian", {.digest = "sha256:" + Sha256Hex("original!!"),
                                  .size = 10,
                                  .path = path}),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("received content")));
  EXPECT_NE(access(path.c_str(), F_OK), 0);
}

TEST_F(RegistryClientUnitTest, BlobRedirectIsFollowedWithoutTheRegistrysAuth) {
  const std::string content = "layer bytes";
  transport_.handler = [&](const HttpRequest& r, const std::string&) {
    if (absl::StartsWith(r.url, "https://storage.example/")) {
      return Answer(200, {}, content);
    }
    if (absl::EndsWith(r.url, "/v2/") && HeaderOf(r, "Authorization").empty()) {
      return Answer(401, {{"www-authenticate", "Basic realm=\"r\""}});
    }
    if (absl::EndsWith(r.url, "/v2/")) return Answer(200);
    return Answer(307, {{"location", "https://storage.example/blob?sig=1"}});
  };
  auto client = MakeClient({.username = "ci", .password = "pw"});
  ASSERT_OK_AND_ASSIGN(std::string bytes,
                       client->ReadBlob("base/debian",
                                        "sha256:" + Sha256Hex(content),
                                        content.size()));
  EXPECT_EQ(bytes, content);
  const std::vector<Sent> sent = transport_.sent();
  ASSERT_FALSE(sent.empty());
  EXPECT_EQ(sent.back().url, "https://storage.example/blob?sig=1");
  EXPECT_EQ(sent.back().authorization, "");
  EXPECT_THAT(sent[sent.size() - 2].authorization, HasSubstr("Basic "));
}

TEST(CredentialsFromAuthJsonTest, ReadsAuthOrUsernameAndPasswordForThatHostOnly) {
  const std::string json = R"({"auths": {
    "base.example:5000": {"auth": "YWxpY2U6cHc6d2l0aDpjb2xvbnM="},
    "https://other.example": {"username": "bob", "password": "pw2"}}})";
  ASSERT_OK_AND_ASSIGN(std::optional<RegistryCredentials> base,
                       CredentialsFromAuthJson(json, "base.example:5000"));
  ASSERT_TRUE(base.has_value());
  EXPECT_EQ(base->username, "alice");
  EXPECT_EQ(base->password, "pw:with:colons");
  ASSERT_OK_AND_ASSIGN(std::optional<RegistryCredentials> other,
                       CredentialsFromAuthJson(json, "other.example"));
  ASSERT_TRUE(other.has_value());
  EXPECT_EQ(other->username, "bob");
  ASSERT_OK_AND_ASSIGN(std::optional<RegistryCredentials> none,
                       CredentialsFromAuthJson(json, "base.example"));
  EXPECT_FALSE(none.has_value());
}

TEST(CredentialsFromAuthJsonTest, MalformedEntriesAreRefusedWithoutTheSecret) {
  EXPECT_THAT(CredentialsFromAuthJson("[]", "h"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("no \"auths\" object")));
  absl::StatusOr<std::optional<RegistryCredentials>> bad =
      CredentialsFromAuthJson(R"({"auths":{"h":{"auth":"not-base64-secret!"}}})",
                              "h");
  EXPECT_THAT(bad, StatusIs(absl::StatusCode::kInvalidArgument,
                            HasSubstr("not base64 of user:password")));
  EXPECT_THAT(std::string(bad.status().message()),
              ::testing::Not(HasSubstr("secret")));
}

}  // namespace
}  // namespace ciagent::oci
