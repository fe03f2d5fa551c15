#include "testing/registry_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <utility>
#include <vector>

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "testing/redis_server.h"
#include "testing/test_certs.h"

extern char** environ;

namespace ciagent::testing {
namespace {

constexpr char kService[] = "ciagent-test-registry";
constexpr char kIssuer[] = "ciagent-test-issuer";
constexpr absl::Duration kStartTimeout = absl::Seconds(15);

bool IsFile(const std::filesystem::path& path) {
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec);
}

// The first executable `name` in PATH, or "".
std::string FindInPath(absl::string_view name) {
  const char* path = std::getenv("PATH");
  for (absl::string_view dir :
       absl::StrSplit(path != nullptr ? path : "/usr/bin:/bin", ':')) {
    if (dir.empty()) continue;
    std::string candidate = absl::StrCat(dir, "/", name);
    if (::access(candidate.c_str(), X_OK) == 0 && IsFile(candidate)) {
      return candidate;
    }
  }
  return "";
}

// OK when python3 can import the token service's modules; checked once.
absl::Status CheckTokenModules(const std::string& scratch) {
  static const absl::Status* const status = [&scratch] {
    absl::Status s = CheckTestPython();
    if (s.ok()) {
      s = RunTool({kTestPython, "-I", "-c", "import jwt, cryptography"},
                  absl::StrCat(scratch, "/python-modules.log"));
    }
    if (!s.ok()) {
      return new absl::Status(absl::NotFoundError(absl::StrCat(
          "python3 with the jwt and cryptography modules (python3-jwt, "
          "python3-cryptography) not installed (",
          s.message(), ")")));
    }
    return new absl::Status();
  }();
  return *status;
}

// A bcrypt htpasswd line for the `user:password` line in `auth_file`, made
// by python3: the bcrypt module when installed, else the crypt module
// (libxcrypt's `$2b$`, which distribution's Go bcrypt accepts; crypt leaves
// Python in 3.13). Cost 4, the minimum: distribution checks the hash on
// every request, and at the usual cost 10+ that alone adds ~100 ms each.
absl::StatusOr<std::string> HtpasswdLine(const std::string& auth_file,
                                         const std::string& scratch) {
  if (absl::Status s = CheckTestPython(); !s.ok()) return s;
  static constexpr char kHash[] =
      "import sys\n"
      "line = open(sys.argv[1], 'rb').read().decode().rstrip('\\n')\n"
      "user, _, password = line.partition(':')\n"
      "try:\n"
      "    import bcrypt\n"
      "    hashed = bcrypt.hashpw(password.encode(),"
      " bcrypt.gensalt(rounds=4)).decode()\n"
      "except ImportError:\n"
      "    import crypt\n"
      "    hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH,"
      " rounds=16))\n"
      "if not hashed or not hashed.startswith('$2'):\n"
      "    sys.exit('crypt has no bcrypt here')\n"
      "print('%s:%s' % (user, hashed))\n";
  const std::string out = absl::StrCat(scratch, "/htpasswd.out");
  absl::Status s =
      RunTool({kTestPython, "-I", "-W", "ignore", "-c", kHash, auth_file}, out);
  if (!s.ok()) {
    return absl::Status(s.code(),
                        absl::StrCat("bcrypt for htpasswd: ", s.message()));
  }
  std::string line(absl::StripAsciiWhitespace(ReadFileOrEmpty(out)));
  RemoveTree(out);
  return absl::StrCat(line, "\n");
}

std::string RandomHex(size_t bytes) {
  std::string raw;
  int fd = ::open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  raw.resize(bytes);
  if (fd >= 0) {
    size_t got = 0;
    while (got < bytes) {
      ssize_t n = ::read(fd, raw.data() + got, bytes - got);
      if (n <= 0) break;
      got += static_cast<size_t>(n);
    }
    ::close(fd);
  }
  return absl::BytesToHexString(raw);
}

// The status code of `GET <path>` on 127.0.0.1:port over plain HTTP, or -1
// when there is no HTTP answer (yet).
int HttpGetStatus(int port, const char* path) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  timeval timeout{.tv_sec = 2, .tv_usec = 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  int status = -1;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    const std::string request =
        absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: 127.0.0.1:", port,
                     "\r\nConnection: close\r\n\r\n");
    if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
        static_cast<ssize_t>(request.size())) {
      char buf[64];
      ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
      // "HTTP/1.x NNN ..."
      if (n >= 12 && std::memcmp(buf, "HTTP/1.", 7) == 0) {
        (void)absl::SimpleAtoi(absl::string_view(buf + 9, 3), &status);
      }
    }
  }
  ::close(fd);
  return status;
}

bool TcpConnects(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool ok =
      ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

absl::Status CheckCredentials(const std::string& user,
                              const std::string& password,
                              absl::string_view what) {
  if (user.empty() || absl::StrContains(user, ':') ||
      absl::StrContains(user, '\n') || absl::StrContains(password, '\n')) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " credentials: a user without ':', no newlines"));
  }
  return absl::OkStatus();
}

// `<method> <uri> <status>` lines from distribution's access log, which is
// in the Apache combined format:
//   127.0.0.1 - - [date] "GET /v2/ HTTP/1.1" 401 87 "" "curl/7.88.1"
std::string AccessLogRequests(const std::string& log) {
  std::string out;
  for (absl::string_view line : absl::StrSplit(log, '\n', absl::SkipEmpty())) {
    size_t open = line.find('"');
    if (open == absl::string_view::npos) continue;
    size_t close = line.find('"', open + 1);
    if (close == absl::string_view::npos) continue;
    std::vector<absl::string_view> request =
        absl::StrSplit(line.substr(open + 1, close - open - 1), ' ');
    std::vector<absl::string_view> rest = absl::StrSplit(
        absl::StripLeadingAsciiWhitespace(line.substr(close + 1)), ' ');
    if (request.size() < 2 || rest.empty()) continue;
    absl::StrAppend(&out, request[0], " ", request[1], " ", rest[0], "\n");
  }
  return out;
}

}  // namespace

// --- RegistryServer ----------------------------------------------------------

absl::StatusOr<std::unique_ptr<RegistryServer>> RegistryServer::Start(
    RegistryServerOptions options) {
  using Auth = RegistryServerOptions::Auth;
  if (FindInPath("docker-registry").empty() && FindInPath("registry").empty()) {
    return absl::NotFoundError(
        "docker-registry (CNCF distribution) not installed");
  }
  if (options.auth != Auth::kNone) {
    if (absl::Status s = CheckCredentials(options.username, options.password,
                                          "registry");
        !s.ok()) {
      return s;
    }
  }
  std::unique_ptr<RegistryServer> server(new RegistryServer());
  server->options_ = std::move(options);
  auto dir = MakeTempDir("ciagent-registry-");
  if (!dir.ok()) return dir.status();
  server->dir_ = *dir;
  const RegistryServerOptions& opts = server->options_;
  if (opts.auth == Auth::kToken) {
    if (absl::Status s = CheckTokenModules(*dir); !s.ok()) return s;
    auto script = FindTestScript("registry_token_server.py",
                             "CIAGENT_REGISTRY_TOKEN_SERVER");
    if (!script.ok()) return script.status();
    server->token_script_ = *script;
  }
  std::error_code ec;
  std::filesystem::create_directories(server->storage_dir(), ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("create ", server->storage_dir(), ": ", ec.message()));
  }
  if (opts.https) {
    auto certs = MakeServerCertificates(absl::StrCat(*dir, "/tls"));
    if (!certs.ok()) return certs.status();
    server->ca_file_ = certs->ca_file;
    server->tls_cert_ = certs->cert_file;
    server->tls_key_ = certs->key_file;
  }
  const std::string auth_file = absl::StrCat(*dir, "/auth");
  if (opts.auth != Auth::kNone) {
    absl::Status s =
        WriteCredentialFile(auth_file, opts.username, opts.password);
    if (!s.ok()) return s;
  }
  if (opts.auth == Auth::kBasic) {
    auto line = HtpasswdLine(auth_file, *dir);
    if (!line.ok()) return line.status();
    absl::Status s = WriteText(absl::StrCat(*dir, "/htpasswd"), *line, 0600);
    if (!s.ok()) return s;
  }
  if (opts.auth == Auth::kToken) {
    if (absl::Status s = MakeSigningCertificate(*dir); !s.ok()) return s;
    absl::Status launched = LaunchOnFreePort(
        server->token_port_, [&] { return server->LaunchTokenServer(); });
    if (!launched.ok()) return launched;
  }
  // The secret protects upload state in Location URLs; fixed, so uploads
  // survive StartAgain().
  const std::string secret = RandomHex(16);
  if (absl::Status s = WriteText(absl::StrCat(*dir, "/http-secret"), secret,
                                 0600);
      !s.ok()) {
    return s;
  }
  absl::Status launched = LaunchOnFreePort(server->port_, [&] {
    if (absl::Status s = server->WriteConfig(); !s.ok()) return s;
    return server->Launch();
  });
  if (!launched.ok()) return launched;
  return server;
}

RegistryServer::~RegistryServer() {
  if (registry_) registry_->Kill();
  if (token_server_) token_server_->Kill();
  RemoveTree(dir_);
}

std::string RegistryServer::url() const {
  return absl::StrCat(options_.https ? "https" : "http", "://", host());
}

std::string RegistryServer::host() const {
  return absl::StrCat("127.0.0.1:", port_);
}

std::string RegistryServer::storage_dir() const {
  return absl::StrCat(dir_, "/storage");
}

std::string RegistryServer::BlobPath(absl::string_view digest) const {
  if (!absl::ConsumePrefix(&digest, "sha256:") || digest.size() != 64) {
    return "";
  }
  for (char c : digest) {
    if (!absl::ascii_isxdigit(c) || absl::ascii_isupper(c)) return "";
  }
  std::string path =
      absl::StrCat(storage_dir(), "/docker/registry/v2/blobs/sha256/",
                   digest.substr(0, 2), "/", digest, "/data");
  return IsFile(path) ? path : "";
}

int RegistryServer::token_requests() const {
  if (options_.auth != RegistryServerOptions::Auth::kToken) return 0;
  int count = 0;
  for (absl::string_view line :
       absl::StrSplit(ReadFileOrEmpty(absl::StrCat(dir_, "/token.log")), '\n',
                      absl::SkipEmpty())) {
    if (absl::StartsWith(line, "GET /token ")) ++count;
  }
  return count;
}

std::string RegistryServer::RequestLog() const {
  // One access log per launch (the child's stdout is truncated on start).
  std::string log;
  for (int i = 0;; ++i) {
    const std::string path = absl::StrCat(dir_, "/access-", i, ".log");
    if (!IsFile(path)) break;
    log += ReadFileOrEmpty(path);
  }
  return AccessLogRequests(log);
}

absl::Status RegistryServer::WriteConfig() {
  using Auth = RegistryServerOptions::Auth;
  const std::string secret =
      ReadFileOrEmpty(absl::StrCat(dir_, "/http-secret"));
  std::string config = absl::StrCat(
      "version: 0.1\n"
      "log:\n"
      "  level: warn\n"
      "  formatter: text\n"
      "  accesslog:\n"
      "    disabled: false\n"
      "storage:\n"
      "  filesystem:\n"
      "    rootdirectory: \"",
      storage_dir(),
      "\"\n"
      "  delete:\n"
      "    enabled: true\n"
      "  maintenance:\n"
      "    uploadpurging:\n"
      "      enabled: false\n"
      "http:\n"
      "  addr: 127.0.0.1:",
      port_,
      "\n"
      "  secret: \"",
      secret, "\"\n");
  if (options_.https) {
    absl::StrAppend(&config, "  tls:\n    certificate: \"", tls_cert_,
                    "\"\n    key: \"", tls_key_, "\"\n");
  }
  if (options_.auth == Auth::kBasic) {
    absl::StrAppend(&config, "auth:\n  htpasswd:\n    realm: ", kService,
                    "\n    path: \"", dir_, "/htpasswd\"\n");
  } else if (options_.auth == Auth::kToken) {
    absl::StrAppend(&config, "auth:\n  token:\n    realm: ",
                    options_.https ? "https" : "http", "://127.0.0.1:",
                    token_port_, "/token\n    service: ", kService,
                    "\n    issuer: ", kIssuer, "\n    rootcertbundle: \"",
                    dir_, "/signer.pem\"\n");
  }
  return WriteText(absl::StrCat(dir_, "/config.yml"), config, 0600);
}

absl::Status RegistryServer::LaunchTokenServer() {
  std::vector<std::string> argv = {
      kTestPython,       "-I",
      token_script_, "--port",
      absl::StrCat(token_port_),
      "--auth-file", absl::StrCat(dir_, "/auth"),
      "--key",       absl::StrCat(dir_, "/signer.key"),
      "--cert",      absl::StrCat(dir_, "/signer.pem"),
      "--service",   kService,
      "--issuer",    kIssuer,
      "--expires-in", absl::StrCat(options_.token_expires_in_s),
      "--log",       absl::StrCat(dir_, "/token.log")};
  if (options_.token_omit_expires_in) argv.push_back("--omit-expires-in");
  if (options_.https) {
    argv.insert(argv.end(), {"--tls-cert", tls_cert_, "--tls-key", tls_key_});
  }
  SubprocessOptions subprocess_options;
  const std::string out = absl::StrCat(dir_, "/token.out");
  const std::string err = absl::StrCat(dir_, "/token.err");
  subprocess_options.stdout_path = out;
  subprocess_options.stderr_path = err;
  auto process = Subprocess::Start(argv, subprocess_options);
  if (!process.ok()) return process.status();
  token_server_ = std::move(process).value();
  return AwaitReadyLine(token_server_, out, err, "registry token service",
                        token_port_, kStartTimeout);
}

absl::Status RegistryServer::Launch() {
  std::string binary = FindInPath("docker-registry");
  if (binary.empty()) binary = FindInPath("registry");
  int launch = 0;
  while (IsFile(absl::StrCat(dir_, "/access-", launch, ".log"))) ++launch;
  SubprocessOptions subprocess_options;
  // Distribution lets REGISTRY_* variables override the configuration file.
  for (char** e = environ; *e != nullptr; ++e) {
    if (absl::StartsWith(*e, "REGISTRY_")) {
      subprocess_options.unset_env.push_back(
          std::string(*e).substr(0, std::string(*e).find('=')));
    }
  }
  // Its access log goes to stdout, everything else to stderr.
  const std::string out = absl::StrCat(dir_, "/access-", launch, ".log");
  const std::string err = absl::StrCat(dir_, "/registry.err");
  subprocess_options.stdout_path = out;
  subprocess_options.stderr_path = err;
  auto process = Subprocess::Start(
      {binary, "serve", absl::StrCat(dir_, "/config.yml")}, subprocess_options);
  if (!process.ok()) return process.status();
  registry_ = std::move(process).value();
  const absl::Time deadline = absl::Now() + kStartTimeout;
  while (absl::Now() < deadline) {
    if (!registry_->running()) {
      registry_.reset();
      RemoveTree(out);
      return absl::UnavailableError(
          absl::StrCat("registry on port ", port_, " exited: ",
                       absl::StripAsciiWhitespace(ReadFileOrEmpty(err))));
    }
    if (options_.https ? TcpConnects(port_) : [&] {
          int status = HttpGetStatus(port_, "/v2/");
          return status == 200 || status == 401;
        }()) {
      // The port answers; make sure it is this registry and not a process
      // that took the port first (then ours exits on the failed bind).
      absl::SleepFor(absl::Milliseconds(20));
      if (registry_->running()) return absl::OkStatus();
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  registry_->Kill();
  registry_.reset();
  return absl::DeadlineExceededError(
      absl::StrCat("registry on port ", port_, " not ready after ",
                   absl::FormatDuration(kStartTimeout), ": ",
                   absl::StripAsciiWhitespace(ReadFileOrEmpty(err))));
}

absl::Status RegistryServer::Stop() {
  // Distribution stops on SIGTERM by dying of it (143) or, when draining,
  // with status 0.
  absl::Status registry = StopProcess(registry_, "registry",
                                      absl::StrCat(dir_, "/registry.err"),
                                      {0, 128 + SIGTERM});
  absl::Status token = StopProcess(token_server_, "registry token service",
                                   absl::StrCat(dir_, "/token.err"), {0});
  return registry.ok() ? token : registry;
}

absl::Status RegistryServer::StartAgain() {
  if ((registry_ && registry_->running()) ||
      (token_server_ && token_server_->running())) {
    return absl::FailedPreconditionError(
        absl::StrCat("registry on port ", port_, " is running"));
  }
  if (options_.auth == RegistryServerOptions::Auth::kToken) {
    if (absl::Status s = LaunchTokenServer(); !s.ok()) return s;
  }
  return Launch();
}

// --- FaultProxy ------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<FaultProxy>> FaultProxy::Start(
    FaultProxyOptions options) {
  if (absl::Status s = CheckTestPython(); !s.ok()) return s;
  if (!absl::StartsWith(options.upstream, "http://") ||
      options.upstream.size() <= 7) {
    return absl::InvalidArgumentError(absl::StrCat(
        "fault proxy upstream '", options.upstream, "': not http://host:port"));
  }
  if (!(options.fault_rate >= 0 && options.fault_rate <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("fault proxy rate ", options.fault_rate, " not in [0, 1]"));
  }
  for (const std::string& method : options.methods) {
    if (method.empty() || !absl::c_all_of(method, absl::ascii_isalpha)) {
      return absl::InvalidArgumentError(
          absl::StrCat("fault proxy method '", method, "'"));
    }
  }
  auto script =
      FindTestScript("registry_fault_proxy.py", "CIAGENT_REGISTRY_FAULT_PROXY");
  if (!script.ok()) return script.status();
  std::unique_ptr<FaultProxy> proxy(new FaultProxy());
  proxy->options_ = std::move(options);
  proxy->script_ = *script;
  auto dir = MakeTempDir("ciagent-fault-proxy-");
  if (!dir.ok()) return dir.status();
  proxy->dir_ = *dir;
  absl::Status launched =
      LaunchOnFreePort(proxy->port_, [&] { return proxy->Launch(); });
  if (!launched.ok()) return launched;
  return proxy;
}

FaultProxy::~FaultProxy() {
  if (process_) process_->Kill();
  RemoveTree(dir_);
}

std::string FaultProxy::url() const { return absl::StrCat("http://", host()); }

std::string FaultProxy::host() const {
  return absl::StrCat("127.0.0.1:", port_);
}

std::pair<int, int> FaultProxy::Counters() const {
  // "requests <seen> faults <injected>", replaced atomically by the proxy.
  const std::string state = ReadFileOrEmpty(absl::StrCat(dir_, "/state"));
  std::vector<absl::string_view> words =
      absl::StrSplit(absl::StripAsciiWhitespace(state), ' ');
  int seen = 0;
  int faults = 0;
  if (words.size() == 4) {
    (void)absl::SimpleAtoi(words[1], &seen);
    (void)absl::SimpleAtoi(words[3], &faults);
  }
  return {seen, faults};
}

int FaultProxy::faults_injected() const { return Counters().second; }

int FaultProxy::requests_seen() const { return Counters().first; }

std::string FaultProxy::RequestLog() const {
  return ReadFileOrEmpty(absl::StrCat(dir_, "/requests.log"));
}

absl::Status FaultProxy::Launch() {
  std::vector<std::string> argv = {
      kTestPython,       "-I",
      script_,       "--port",
      absl::StrCat(port_),
      "--upstream",  options_.upstream,
      "--fault-rate", absl::StrCat(options_.fault_rate),
      "--seed",      absl::StrCat(options_.seed),
      "--retry-after", absl::StrCat(options_.retry_after_s),
      "--methods",   absl::StrJoin(options_.methods, ","),
      "--state",     absl::StrCat(dir_, "/state"),
      "--log",       absl::StrCat(dir_, "/requests.log")};
  if (options_.reset_connections) argv.push_back("--reset-connections");
  SubprocessOptions subprocess_options;
  const std::string out = absl::StrCat(dir_, "/proxy.out");
  const std::string err = absl::StrCat(dir_, "/proxy.err");
  subprocess_options.stdout_path = out;
  subprocess_options.stderr_path = err;
  auto process = Subprocess::Start(argv, subprocess_options);
  if (!process.ok()) return process.status();
  process_ = std::move(process).value();
  return AwaitReadyLine(process_, out, err, "fault proxy", port_,
                        kStartTimeout);
}

// --- QuirksRegistry --------------------------------------------------------------

absl::StatusOr<std::unique_ptr<QuirksRegistry>> QuirksRegistry::Start(
    QuirksRegistryOptions options) {
  if (absl::Status s = CheckTestPython(); !s.ok()) return s;
  if (absl::Status s = CheckCredentials(options.username, options.password,
                                        "quirks registry");
      !s.ok()) {
    return s;
  }
  auto script = FindTestScript("registry_quirks_server.py",
                           "CIAGENT_REGISTRY_QUIRKS_SERVER");
  if (!script.ok()) return script.status();
  std::unique_ptr<QuirksRegistry> registry(new QuirksRegistry());
  registry->options_ = std::move(options);
  registry->script_ = *script;
  auto dir = MakeTempDir("ciagent-quirks-registry-");
  if (!dir.ok()) return dir.status();
  registry->dir_ = *dir;
  absl::Status s = WriteCredentialFile(absl::StrCat(*dir, "/auth"),
                                       registry->options_.username,
                                       registry->options_.password);
  if (!s.ok()) return s;
  absl::Status launched =
      LaunchOnFreePort(registry->port_, [&] { return registry->Launch(); });
  if (!launched.ok()) return launched;
  return registry;
}

QuirksRegistry::~QuirksRegistry() {
  if (process_) process_->Kill();
  RemoveTree(dir_);
}

std::string QuirksRegistry::url() const {
  return absl::StrCat("http://", host());
}

std::string QuirksRegistry::host() const {
  return absl::StrCat("127.0.0.1:", port_);
}

std::string QuirksRegistry::RequestLog() const {
  return ReadFileOrEmpty(absl::StrCat(dir_, "/requests.log"));
}

absl::Status QuirksRegistry::Launch() {
  const std::vector<std::string> argv = {
      kTestPython, "-I", script_,
      "--root", absl::StrCat(dir_, "/storage"),
      "--port", absl::StrCat(port_),
      "--auth-file", absl::StrCat(dir_, "/auth"),
      "--log", absl::StrCat(dir_, "/requests.log"),
      "--stream-patch-status", absl::StrCat(options_.stream_patch_status)};
  SubprocessOptions subprocess_options;
  const std::string out = absl::StrCat(dir_, "/server.out");
  const std::string err = absl::StrCat(dir_, "/server.err");
  subprocess_options.stdout_path = out;
  subprocess_options.stderr_path = err;
  auto process = Subprocess::Start(argv, subprocess_options);
  if (!process.ok()) return process.status();
  process_ = std::move(process).value();
  return AwaitReadyLine(process_, out, err, "quirks registry", port_,
                        kStartTimeout);
}

}  // namespace ciagent::testing
