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
import base64
import gzip
import binascii
import hmac
import http.server
import os
import signal
import socket
import socketserver
import ssl
import subprocess
import sys
import threading


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
STREAM_CHUNK = 64 * 1024


class BadRequest(Exception):
    pass


class Rejection:
    """A response decided before the body is read (503 or 401)."""

    def __init__(self, status, reason, headers=()):
        self.status = status
        self.reason = reason
        self.headers = list(headers)


class GitHttpServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port, root, tls, credentials, fail_first, log_path):
        self.root = root
        self.tls = tls
        self.credentials = credentials  # (user bytes, password bytes) or None
        self.log_path = log_path
        self._lock = threading.Lock()
        self._failures_left = fail_first
        super().__init__(("127.0.0.1", port), GitRequestHandler)

    def server_bind(self):
        # HTTPServer.server_bind would resolve the host name (getfqdn), a DNS
        # round trip that can stall on machines without a resolver.
        socketserver.TCPServer.server_bind(self)
        self.server_name = "127.0.0.1"
        self.server_port = self.server_address[1]

    def take_failure(self):
        with self._lock:
            if self._failures_left > 0:
                self._failures_left -= 1
                return True
            return False

    def log_request_line(self, method, path, status):
        if not self.log_path:
            return
        line = "%s %s %d\n" % (method, path, status)
        if self.credentials is not None and self.credentials[1]:
            # A client could put user:password@ into an absolute-form
            # request target; the secret still stays out of the log.
            password = self.credentials[1].decode("utf-8", "replace")
            line = line.replace(password, "***")
        with self._lock:
            with open(self.log_path, "a", encoding="utf-8") as log:
                log.write(line)

    def finish_request(self, request, client_address):
        # The TLS handshake runs here, in the connection's own thread, so a
        # client that stalls or aborts it cannot block accept().
        if self.tls is not None:
            request.settimeout(30)
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                request.close()
                return
        try:
            self.RequestHandlerClass(request, client_address, self)
        finally:
            if self.tls is not None:
                request.close()

    def handle_error(self, request, client_address):
        # Client disconnects are routine; a traceback would only add noise.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, ssl.SSLError, socket.timeout)):
            return
        super().handle_error(request, client_address)


class GitRequestHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes; with Nagle's algorithm the
    # second waits for the client's delayed ACK (40 ms on Linux) on a
    # kept-alive connection. Go's net/http, Gitea's server, sets TCP_NODELAY
    # too.
    disable_nagle_algorithm = True
    server_version = "ciagent-git-test"
    # An idle keep-alive connection is dropped after this many seconds.
    timeout = 60

    def version_string(self):
        return self.server_version

    def log_message(self, format, *args):
        pass  # the request log is written in log_request

    def log_request(self, code="-", size="-"):
        path = self.path.split("?", 1)[0] if hasattr(self, "path") else "-"
        method = getattr(self, "command", None) or "-"
        try:
            status = int(getattr(code, "value", code))
        except (TypeError, ValueError):
            status = 0
        self.server.log_request_line(method, path, status)

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
            self.send_simple(rejection.status, rejection.reason,
                             rejection.headers)
            return
        if expects_continue:
            self.send_response_only(100)
            self.end_headers()
        try:
            body = self.read_body()
        except BadRequest as e:
            self.close_connection = True
            self.send_simple(400, str(e))
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
        user, password = self.server.credentials
        header = self.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            return None
        given_user, sep, given_password = decoded.partition(b":")
        # Both comparisons always run, so timing does not tell which failed.
        user_ok = hmac.compare_digest(given_user, user)
        password_ok = hmac.compare_digest(given_password, password)
        if sep and user_ok and password_ok:
            return user.decode("utf-8", "replace")
        return None

    def read_body(self):
        encoding = self.headers.get("Transfer-Encoding", "")
        if encoding:
            if encoding.strip().lower() != "chunked":
                raise BadRequest("unsupported Transfer-Encoding")
            return self.read_chunked()
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            n = int(length)
        except ValueError:
            raise BadRequest("bad Content-Length")
        if n < 0 or n > MAX_BODY:
            raise BadRequest("bad Content-Length")
        body = self.rfile.read(n)
        if len(body) != n:
            raise BadRequest("truncated body")
        return body

    def read_chunked(self):
        parts = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            if not line.endswith(b"\n"):
                raise BadRequest("truncated chunk header")
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise BadRequest("bad chunk size")
            if size < 0:
                raise BadRequest("bad chunk size")
            if size == 0:
                # Trailer fields, if any, end with an empty line.
                while True:
                    trailer = self.rfile.readline(8192)
                    if not trailer.endswith(b"\n"):
                        raise BadRequest("truncated trailer")
                    if trailer in (b"\r\n", b"\n"):
                        return b"".join(parts)
            total += size
            if total > MAX_BODY:
                raise BadRequest("body too large")
            data = self.rfile.read(size)
            if len(data) != size:
                raise BadRequest("truncated chunk")
            parts.append(data)
            if self.rfile.readline(3) not in (b"\r\n", b"\n"):
                raise BadRequest("missing chunk terminator")

    def send_simple(self, status, message, headers=()):
        body = (message + "\n").encode("utf-8")
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

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
                self.send_simple(400, "bad gzip body")
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
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                    self.wfile.flush()
                data = proc.stdout.read1(STREAM_CHUNK)
                if not data:
                    break
            self.wfile.write(b"0\r\n\r\n")
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
            self.send_simple(500, "cannot run git http-backend: %s" % e)
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
                self.send_simple(502, "git http-backend sent no response")
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
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            else:
                self.wfile.write(data)
            self.wfile.flush()
        if chunked:
            self.wfile.write(b"0\r\n\r\n")
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


def read_credentials(path):
    with open(path, "rb") as f:
        line = f.readline().rstrip(b"\r\n")
    user, sep, password = line.partition(b":")
    if not sep or not user:
        raise ValueError("auth file must hold one user:password line")
    return user, password


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
            credentials = read_credentials(args.auth_file)
        except (OSError, ValueError) as e:
            print("git_http_server: --auth-file: %s" % e, file=sys.stderr)
            return 2

    tls = None
    if args.cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        # TLS 1.2 stays allowed: mbedTLS 2.x clients speak nothing newer.
        tls.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            tls.load_cert_chain(args.cert, args.key)
        except (OSError, ssl.SSLError) as e:
            print("git_http_server: certificate: %s" % e, file=sys.stderr)
            return 2

    try:
        server = GitHttpServer(args.port, os.path.abspath(args.root), tls,
                               credentials, args.fail_first, args.log)
    except OSError as e:
        print("git_http_server: bind 127.0.0.1:%d: %s" % (args.port, e.strerror),
              file=sys.stderr)
        return 3

    def stop(signo, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        print("ready %d" % server.server_address[1], flush=True)
        server.serve_forever(poll_interval=0.1)
    except SystemExit:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
