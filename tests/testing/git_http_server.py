#!/usr/bin/python3
"""A git smart-HTTP server for integration tests.

Serves the bare repositories under --root on 127.0.0.1, over HTTP or, with
--cert/--key, HTTPS: fetches through `git upload-pack --stateless-rpc`, run
directly as Gitea runs it, everything else (pushes, dumb HTTP) through `git
http-backend` as a CGI program; one process per request. Optional HTTP Basic
authentication takes its single `user:password` line from --auth-file so that
no secret appears in argv.

Prints `ready <port>` on stdout once it accepts connections, and exits with
status 0 on SIGTERM or SIGINT. Responses are HTTP/1.1 with keep-alive; every
response carries Content-Length or uses chunked transfer coding, so clients
never have to wait for the connection to close. Request bodies may come with
Content-Length or `Transfer-Encoding: chunked` (git and libgit2 stream large
negotiations that way); chunked bodies are decoded before the CGI sees them.

--log FILE appends one line per request: `<method> <path> <status>`. The
Authorization header and the credentials never reach the log, stdout or
stderr.

--fail-first N answers the first N requests with 503, for retry tests.
"""

import argparse
import gzip
import os
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testserver  # noqa: E402
from testserver import BadRequest  # noqa: E402


def backend_command():
    """git-http-backend itself, not `git http-backend`, which only execs it:
    one process fewer per request (about 10 ms), as a server that runs the
    backend directly (Gitea runs upload-pack directly) pays."""
    try:
        exec_path = subprocess.run(
            ["git", "--exec-path"], check=True, capture_output=True,
            text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ["git", "http-backend"]
    backend = os.path.join(exec_path, "git-http-backend")
    if os.access(backend, os.X_OK):
        return [backend]
    return ["git", "http-backend"]


BACKEND = backend_command()
# Upper bound for a request body held in memory; test repositories are small.
MAX_BODY = 256 * 1024 * 1024
STREAM_CHUNK = testserver.STREAM_CHUNK


class Rejection:
    """A response decided before the body is read (503 or 401)."""

    def __init__(self, status, reason, headers=()):
        self.status = status
        self.reason = reason
        self.headers = list(headers)


class GitHttpServer(testserver.TestServer):
    def __init__(self, port, root, tls, credentials, fail_first, log_path):
        self.root = root
        self.credentials = credentials  # (user bytes, password bytes) or None
        self._lock = threading.Lock()
        self._failures_left = fail_first
        super().__init__(port, GitRequestHandler, tls, log_path)

    def take_failure(self):
        with self._lock:
            if self._failures_left > 0:
                self._failures_left -= 1
                return True
            return False

    def redact(self, line):
        if self.credentials is not None and self.credentials[1]:
            # A client could put user:password@ into an absolute-form
            # request target; the secret still stays out of the log.
            password = self.credentials[1].decode("utf-8", "replace")
            line = line.replace(password, "***")
        return line


class GitRequestHandler(testserver.TestHandler):
    server_version = "ciagent-git-test"

    def handle_expect_100(self):
        # 100 Continue is sent (or not) in handle_git, once authentication
        # has been decided; a rejected body is then never transmitted.
        return True

    def do_GET(self):
        self.handle_git()

    def do_POST(self):
        self.handle_git()

    def do_HEAD(self):
        self.handle_git()

    # --- request handling -------------------------------------------------

    def handle_git(self):
        rejection = self.rejection()
        expects_continue = (
            self.headers.get("Expect", "").lower() == "100-continue"
            and self.request_version != "HTTP/1.0")
        if rejection is not None:
            if expects_continue:
                # The body will not be sent; the connection cannot be reused.
                self.close_connection = True
            else:
                try:
                    self.read_body()
                except (BadRequest, OSError):
                    self.close_connection = True
            self.send_text(rejection.status, rejection.reason,
                             rejection.headers)
            return
        if expects_continue:
            self.send_response_only(100)
            self.end_headers()
        try:
            body = self.read_body()
        except BadRequest as e:
            self.close_connection = True
            self.send_text(400, str(e))
            return
        self.run_backend(body)

    def rejection(self):
        if self.server.take_failure():
            return Rejection(503, "Service Unavailable (injected failure)",
                             [("Retry-After", "0")])
        if self.server.credentials is None:
            return None
        if self.authenticated_user() is None:
            return Rejection(401, "Unauthorized",
                             [("WWW-Authenticate", 'Basic realm="git"')])
        return None

    def authenticated_user(self):
        """The user name when the request carries the right credentials."""
        if self.server.credentials is None:
            return None
        return testserver.basic_auth_user(self.headers,
                                          self.server.credentials)

    def read_body(self):
        return b"".join(self.body_pieces(MAX_BODY))

    def cgi_environment(self, body):
        path, _, query = self.path.partition("?")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/"),
            "LANG": "C",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": self.request_version,
            "SERVER_SOFTWARE": self.server_version,
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": str(self.server.server_address[1]),
            "GIT_PROJECT_ROOT": self.server.root,
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "REQUEST_METHOD": self.command,
            "REMOTE_ADDR": self.client_address[0],
            "CONTENT_LENGTH": str(len(body)),
            # Anonymous pushes are allowed too: these are throwaway repos.
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "http.receivepack",
            "GIT_CONFIG_VALUE_0": "true",
        }
        for name in ("TMPDIR",):
            if name in os.environ:
                env[name] = os.environ[name]
        content_type = self.headers.get("Content-Type")
        if content_type:
            env["CONTENT_TYPE"] = content_type
        content_encoding = self.headers.get("Content-Encoding")
        if content_encoding:
            env["HTTP_CONTENT_ENCODING"] = content_encoding
        protocol = self.headers.get("Git-Protocol")
        if protocol:
            env["GIT_PROTOCOL"] = protocol
            env["HTTP_GIT_PROTOCOL"] = protocol
        user = self.authenticated_user()
        if user is not None:
            env["REMOTE_USER"] = user
            env["AUTH_TYPE"] = "Basic"
        return env

    def upload_pack_request(self):
        """(repository dir, advertise) when the request is for the fetch
        service, else None."""
        path, _, query = self.path.partition("?")
        if self.command == "GET" and path.endswith("/info/refs"):
            if query != "service=git-upload-pack":
                return None
            repo, advertise = path[:-len("/info/refs")], True
        elif self.command == "POST" and path.endswith("/git-upload-pack"):
            repo, advertise = path[:-len("/git-upload-pack")], False
        else:
            return None
        root = os.path.realpath(self.server.root)
        directory = os.path.realpath(os.path.join(root, repo.lstrip("/")))
        if not directory.startswith(root + os.sep) or not os.path.isfile(
                os.path.join(directory, "HEAD")):
            return None
        return directory, advertise

    def run_upload_pack(self, directory, advertise, body):
        """The fetch service as Gitea serves it: `git upload-pack
        --stateless-rpc` run directly (no CGI program in between), one process
        per request, its output relayed with chunked coding."""
        protocol = self.headers.get("Git-Protocol", "")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        if "TMPDIR" in os.environ:
            env["TMPDIR"] = os.environ["TMPDIR"]
        if protocol:
            env["GIT_PROTOCOL"] = protocol
        if self.headers.get("Content-Encoding", "").lower() in ("gzip",
                                                               "x-gzip"):
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError):
                self.send_text(400, "bad gzip body")
                return
        argv = ["git", "upload-pack", "--stateless-rpc"]
        if advertise:
            argv.append("--advertise-refs")
        argv.append(directory)
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE)
        feeder = threading.Thread(target=feed, args=(proc.stdin, body),
                                  daemon=True)
        feeder.start()
        kind = "advertisement" if advertise else "result"
        prefix = b""
        if advertise and "version=2" not in protocol:
            line = b"# service=git-upload-pack\n"
            prefix = b"%04x%s0000" % (len(line) + 4, line)
        try:
            self.send_response(200)
            self.send_header("Content-Type",
                             "application/x-git-upload-pack-" + kind)
            self.send_header("Cache-Control", "no-cache, max-age=0")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            data = prefix
            while True:
                if data:
                    self.write_chunk(data)
                    self.wfile.flush()
                data = proc.stdout.read1(STREAM_CHUNK)
                if not data:
                    break
            self.write_chunk(b"")
            self.wfile.flush()
        finally:
            proc.stdout.close()
            feeder.join()
            proc.wait()

    def run_backend(self, body):
        upload_pack = self.upload_pack_request()
        if upload_pack is not None and self.request_version != "HTTP/1.0":
            self.run_upload_pack(*upload_pack, body)
            return
        try:
            proc = subprocess.Popen(
                BACKEND, env=self.cgi_environment(body),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        except OSError as e:
            self.send_text(500, "cannot run git http-backend: %s" % e)
            return
        # Fed from another thread: the backend may write before it has read
        # everything, and pipes are small.
        feeder = threading.Thread(target=feed, args=(proc.stdin, body),
                                  daemon=True)
        feeder.start()
        try:
            self.relay_backend_output(proc.stdout)
        finally:
            proc.stdout.close()
            feeder.join()
            proc.wait()

    def relay_backend_output(self, out):
        status, reason = 200, None
        headers = []
        length = None
        while True:
            line = out.readline(65536)
            if not line:
                # The backend died before finishing its headers.
                self.send_text(502, "git http-backend sent no response")
                return
            line = line.rstrip(b"\r\n")
            if not line:
                break
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip(), value.strip()
            lower = name.lower()
            if lower == "status":
                code, _, reason = value.partition(" ")
                status = int(code)
            elif lower == "content-length":
                length = int(value)
            elif lower in ("connection", "transfer-encoding", "keep-alive"):
                pass  # hop-by-hop: ours to decide
            else:
                headers.append((name, value))
        self.send_response(status, reason or None)
        for name, value in headers:
            self.send_header(name, value)
        no_body = self.command == "HEAD" or status in (204, 304)
        chunked = False
        if no_body:
            if length is not None:
                self.send_header("Content-Length", str(length))
        elif length is not None:
            self.send_header("Content-Length", str(length))
        elif self.request_version == "HTTP/1.0":
            self.close_connection = True
            self.send_header("Connection", "close")
        else:
            chunked = True
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if no_body:
            self.wfile.flush()
            return
        sent = 0
        while True:
            data = out.read1(STREAM_CHUNK)
            if not data:
                break
            if length is not None:
                data = data[:max(0, length - sent)]
                if not data:
                    continue
            sent += len(data)
            if chunked:
                self.write_chunk(data)
            else:
                self.wfile.write(data)
            self.wfile.flush()
        if chunked:
            self.write_chunk(b"")
        elif length is not None and sent < length:
            # The backend broke its promise; only closing tells the client.
            self.close_connection = True
        self.wfile.flush()


def feed(pipe, body):
    try:
        if body:
            pipe.write(body)
    except (BrokenPipeError, OSError):
        pass
    finally:
        try:
            pipe.close()
        except OSError:
            pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True,
                        help="directory holding the bare repositories")
    parser.add_argument("--port", type=int, required=True,
                        help="TCP port on 127.0.0.1 (0 picks one)")
    parser.add_argument("--cert", help="PEM server certificate (HTTPS)")
    parser.add_argument("--key", help="PEM private key of --cert")
    parser.add_argument("--auth-file",
                        help="file with one user:password line (Basic auth)")
    parser.add_argument("--log", help="append one line per request here")
    parser.add_argument("--fail-first", type=int, default=0,
                        help="answer the first N requests with 503")
    args = parser.parse_args()
    if bool(args.cert) != bool(args.key):
        parser.error("--cert and --key go together")

    credentials = None
    if args.auth_file:
        try:
            credentials = testserver.read_credentials(args.auth_file)
        except (OSError, ValueError) as e:
            print("git_http_server: --auth-file: %s" % e, file=sys.stderr)
            return 2

    tls = testserver.tls_context("git_http_server", args.cert, args.key)
    return testserver.serve(
        "git_http_server", args.port,
        lambda: GitHttpServer(args.port, os.path.abspath(args.root), tls,
                              credentials, args.fail_first, args.log))


if __name__ == "__main__":
    sys.exit(main())
