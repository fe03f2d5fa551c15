// Image assembly without a registry: the layer, the config and the manifest
// it writes, byte for byte where reproducibility depends on it.
#include "ciagent/image/assembly.h"

#include <simdjson.h>
#include <sys/stat.h>
#include <zlib.h>

#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "ciagent/base/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"
#include "testing/redis_server.h"  // MakeTempDir, RemoveTree
#include "testing/subprocess.h"

namespace ciagent {
namespace {

using ::ciagent::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string Gunzip(const std::string& gz) {
  z_stream stream{};
  EXPECT_EQ(inflateInit2(&stream, 15 + 16), Z_OK);
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(gz.data()));
  stream.avail_in = static_cast<uInt>(gz.size());
  std::string out;
  char buffer[1 << 16];
  int result;
  do {
    stream.next_out = reinterpret_cast<Bytef*>(buffer);
    stream.avail_out = sizeof(buffer);
    result = inflate(&stream, Z_NO_FLUSH);
    out.append(buffer, sizeof(buffer) - stream.avail_out);
  } while (result == Z_OK);
  EXPECT_EQ(result, Z_STREAM_END);
  inflateEnd(&stream);
  return out;
}

struct TarEntry {
  std::string name;
  char type;
  std::string mode, uid, gid, mtime;
  std::string content;
};

std::string Field(const std::string& block, size_t offset, size_t width) {
  std::string value = block.substr(offset, width);
  return value.substr(0, value.find('\0'));
}

std::vector<TarEntry> ReadTar(const std::string& tar) {
  std::vector<TarEntry> entries;
  for (size_t at = 0; at + 512 <= tar.size();) {
    const std::string block = tar.substr(at, 512);
    if (block == std::string(512, '\0')) break;
    TarEntry entry{.name = Field(block, 0, 100),
                   .type = block[156],
                   .mode = Field(block, 100, 8),
                   .uid = Field(block, 108, 8),
                   .gid = Field(block, 116, 8),
                   .mtime = Field(block, 136, 12)};
    if (std::string prefix = Field(block, 345, 155); !prefix.empty()) {
      entry.name = absl::StrCat(prefix, "/", entry.name);
    }
    const size_t size = std::stoul(Field(block, 124, 12), nullptr, 8);
    entry.content = tar.substr(at + 512, size);
    at += 512 + (size + 511) / 512 * 512;
    entries.push_back(std::move(entry));
  }
  return entries;
}

class AssemblyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(tmp_, testing::MakeTempDir("assembly"));
  }
  void TearDown() override {
    if (!tmp_.empty()) testing::RemoveTree(tmp_);
  }
  std::string Binary(const std::string& name, const std::string& content,
                     mode_t mode = 0700) {
    const std::string path = absl::StrCat(tmp_, "/", name);
    EXPECT_OK(testing::WriteText(path, content, mode));
    return path;
  }

  std::string tmp_;
};

TEST_F(AssemblyTest, LayerHoldsSortedBinariesOwnedByRootWithCommitTime) {
  const std::string zeta = Binary("zeta", "zeta-bytes");
  const std::string app = Binary("app", std::string(700, 'x'));
  const absl::Time commit = absl::FromUnixSeconds(1700000000);
  ASSERT_OK_AND_ASSIGN(
      LayerBlob layer,
      WriteBinaryLayer({{"zeta", zeta}, {"app", app}}, "/usr/local/bin", commit,
                       tmp_ + "/layer.tar.gz"));
  const std::string gz = ReadFile(tmp_ + "/layer.tar.gz");
  EXPECT_EQ(layer.size, gz.size());
  EXPECT_EQ(layer.digest, "sha256:" + Sha256Hex(gz));
  const std::string tar = Gunzip(gz);
  EXPECT_EQ(layer.diff_id, "sha256:" + Sha256Hex(tar));
  const std::vector<TarEntry> entries = ReadTar(tar);
  std::vector<std::string> names;
  for (const TarEntry& entry : entries) {
    names.push_back(entry.name);
    EXPECT_EQ(entry.uid, "0000000") << entry.name;
    EXPECT_EQ(entry.gid, "0000000") << entry.name;
    EXPECT_EQ(entry.mode, "0000755") << entry.name;  // not the file's 0700
    EXPECT_EQ(std::stoll(entry.mtime, nullptr, 8), 1700000000) << entry.name;
  }
  EXPECT_THAT(names, ElementsAre("usr/", "usr/local/", "usr/local/bin/",
                                 "usr/local/bin/app", "usr/local/bin/zeta"));
  EXPECT_EQ(entries[3].type, '0');
  EXPECT_EQ(entries[3].content, std::string(700, 'x'));
  EXPECT_EQ(entries[4].content, "zeta-bytes");
  // gzip header: no name, mtime 0 -- nothing from the machine or the clock.
  EXPECT_EQ(gz.substr(3, 5), std::string("\0\0\0\0\0", 5));
}

TEST_F(AssemblyTest, SameInputsGiveTheSameLayerWhateverTheFileTimes) {
  const std::string app = Binary("app", "the binary");
  const absl::Time commit = absl::FromUnixSeconds(1700000000);
  ASSERT_OK_AND_ASSIGN(LayerBlob first,
                       WriteBinaryLayer({{"app", app}}, "/usr/local/bin",
                                        commit, tmp_ + "/one.tar.gz"));
  // Written again: a later mtime, another mode.
  ASSERT_OK(testing::WriteText(app, "the binary", 0500));
  ASSERT_OK_AND_ASSIGN(LayerBlob second,
                       WriteBinaryLayer({{"app", app}}, "/usr/local/bin/",
                                        commit, tmp_ + "/two.tar.gz"));
  EXPECT_EQ(first.digest, second.digest);
  EXPECT_EQ(first.diff_id, second.diff_id);
}

// Layers are compressed in 512 KiB blocks on several threads: a binary of
// several blocks must come back whole, and the same on every run.
TEST_F(AssemblyTest, LargeBinaryRoundTripsThroughTheBlockwiseGzip) {
  std::string content;
  uint64_t state = 42;
  while (content.size() < (1300u << 10)) {  // text-like and random runs
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    content += (state >> 60) < 8 ? std::string(64, 'a' + (state >> 59) % 26)
                                 : std::to_string(state);
  }
  const std::string big = Binary("big", content);
  ASSERT_OK_AND_ASSIGN(LayerBlob first,
                       WriteBinaryLayer({{"big", big}}, "/opt", absl::UnixEpoch(),
                                        tmp_ + "/big1.tar.gz"));
  ASSERT_OK_AND_ASSIGN(LayerBlob second,
                       WriteBinaryLayer({{"big", big}}, "/opt", absl::UnixEpoch(),
                                        tmp_ + "/big2.tar.gz"));
  EXPECT_EQ(first.digest, second.digest);
  const std::string gz = ReadFile(tmp_ + "/big1.tar.gz");
  EXPECT_LT(gz.size(), content.size());
  const std::string tar = Gunzip(gz);
  EXPECT_EQ(first.diff_id, "sha256:" + Sha256Hex(tar));
  const std::vector<TarEntry> entries = ReadTar(tar);
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[1].name, "opt/big");
  EXPECT_TRUE(entries[1].content == content);
}

TEST_F(AssemblyTest, LayerRefusesMissingBinaryAndPathOutsideRoot) {
  EXPECT_THAT(WriteBinaryLayer({{"app", tmp_ + "/missing"}}, "/usr/bin",
                               absl::UnixEpoch(), tmp_ + "/l.tar.gz"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("binary app: " + tmp_ +
                                 "/missing: No such file or directory")));
  const std::string app = Binary("app", "x");
  EXPECT_THAT(WriteBinaryLayer({{"app", app}}, "usr/bin", absl::UnixEpoch(),
                               tmp_ + "/l.tar.gz"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("not absolute: it must be inside /")));
  EXPECT_THAT(WriteBinaryLayer({{"app", app}}, "/usr/../..", absl::UnixEpoch(),
                               tmp_ + "/l.tar.gz"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("leaves / through \"..\"")));
  EXPECT_THAT(WriteBinaryLayer({{"app", tmp_}}, "/bin", absl::UnixEpoch(),
                               tmp_ + "/l.tar.gz"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("is not a file")));
}

constexpr char kBaseConfig[] = R"({
  "created": "2020-01-01T00:00:00Z",
  "architecture": "amd64", "os": "linux", "author": "base team",
  "container_config": {"Cmd": ["/bin/sh"]},
  "config": {"Env": ["PATH=/usr/bin:/bin", "LANG=C"], "Cmd": ["/bin/sh"],
             "Labels": {"vendor": "base", "team": "base"},
             "ExposedPorts": {"22/tcp": {}}, "StopSignal": "SIGINT"},
  "rootfs": {"type": "layers", "diff_ids": ["sha256:aaaa"]},
  "history": [{"created_by": "base layer"}]})";

TEST(EditImageConfigTest, SetsTheSettingsOverTheBaseAndKeepsWhatItDoesNotKnow) {
  ConfigChanges changes{
      .entrypoint = {"/usr/local/bin/app"},
      .cmd = {"--serve"},
      .env = {{"LANG", "C.UTF-8"}, {"RUST_LOG", "info"}},
      .user = "65532",
      .ports = {"8080/tcp"},
      .labels = {{"team", "payments"},
                 {"org.opencontainers.image.revision", "abc123"}},
      .created = absl::FromUnixSeconds(1700000000),
      .diff_id = "sha256:bbbb",
      .created_by = "COPY app /usr/local/bin"};
  ASSERT_OK_AND_ASSIGN(std::string json, EditImageConfig(kBaseConfig, changes));
  EXPECT_EQ(
      json,
      R"({"created":"2023-11-14T22:13:20Z","architecture":"amd64","os":"linux",)"
      R"("author":"base team","config":{"User":"65532",)"
      R"("ExposedPorts":{"22/tcp":{},"8080/tcp":{}},)"
      R"("Env":["PATH=/usr/bin:/bin","LANG=C.UTF-8","RUST_LOG=info"],)"
      R"("Entrypoint":["/usr/local/bin/app"],"Cmd":["--serve"],)"
      R"("WorkingDir":"/","Labels":{"vendor":"base","team":"payments",)"
      R"("org.opencontainers.image.revision":"abc123"},"StopSignal":"SIGINT"},)"
      R"("rootfs":{"type":"layers","diff_ids":["sha256:aaaa","sha256:bbbb"]},)"
      R"("history":[{"created_by":"base layer"},{"created":"2023-11-14T22:13:20Z",)"
      R"("created_by":"COPY app /usr/local/bin",)"
      R"("comment":"libciagent image assembly"}]})");
}

TEST(EditImageConfigTest, WithoutCmdTheBasesCmdIsDropped) {
  ASSERT_OK_AND_ASSIGN(
      std::string json,
      EditImageConfig(kBaseConfig, {.entrypoint = {"/app"}, .user = "1000"}));
  EXPECT_THAT(json, ::testing::Not(HasSubstr("\"Cmd\"")));
  EXPECT_THAT(EditImageConfig(R"({"os":"linux"})", {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("not an image config")));
}

TEST(MakeImageManifestTest, AppendsTheLayerAndKeepsTheBasesFamily) {
  const oci::Descriptor config{.media_type = oci::kOciConfig,
                               .digest = "sha256:" + Sha256Hex("config"),
                               .size = 6};
  const oci::Descriptor layer{.media_type = oci::kOciLayerGzip,
                              .digest = "sha256:" + Sha256Hex("layer"),
                              .size = 5};
  const std::string base_layer = absl::StrCat(
      R"({"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":")",
      "sha256:", Sha256Hex("base"), R"(","size":4,"annotations":{"a":"b"}})");
  const std::string oci_base = absl::StrCat(
      R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",)",
      R"("config":{"mediaType":"application/vnd.oci.image.config.v1+json",)",
      R"("digest":"sha256:)", Sha256Hex("old"), R"(","size":3},"layers":[)",
      base_layer, "]}");
  ASSERT_OK_AND_ASSIGN(
      std::string manifest,
      MakeImageManifest(oci_base, config, layer, {{"org.opencontainers.image.revision", "abc"}}));
  EXPECT_EQ(manifest,
            absl::StrCat(
                R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",)",
                R"("config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":")",
                config.digest, R"(","size":6},"layers":[)", base_layer,
                R"(,{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":")",
                layer.digest, R"(","size":5}],)",
                R"("annotations":{"org.opencontainers.image.revision":"abc"}})"));
  ASSERT_OK_AND_ASSIGN(oci::Manifest parsed, oci::ParseManifest(manifest));
  EXPECT_EQ(parsed.layers.size(), 2u);

  const std::string docker_base = absl::StrCat(
      R"({"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",)",
      R"("config":{"mediaType":"application/vnd.docker.container.image.v1+json",)",
      R"("digest":"sha256:)", Sha256Hex("old"), R"(","size":3},"layers":[]})");
  ASSERT_OK_AND_ASSIGN(manifest, MakeImageManifest(docker_base, config, layer,
                                                   {{"k", "v"}}));
  EXPECT_THAT(manifest, HasSubstr(oci::kDockerManifest));
  EXPECT_THAT(manifest, ::testing::Not(HasSubstr("annotations")));
}

}  // namespace
}  // namespace ciagent
