"""What the HTTP servers the tests start have in common.

git_http_server.py, registry_token_server.py, registry_quirks_server.py and
registry_fault_proxy.py each import this module and keep only what makes
them different. They are run as `python3 -I <script>`, which leaves the
script's directory off sys.path, so each one puts it there before the
import.

The shared contract with the C++ fixtures: listen on 127.0.0.1 (port 0
picks one), optionally with TLS; print `ready <port>` on stdout once
connections are accepted; exit 0 on SIGTERM or SIGINT, 2 on a bad argument
or file, 3 when the port cannot be bound. --log FILE gets one line per
request, `<method> <path> <status>`, written from send_response, so a line
is there before the client sees its answer.
"""

import base64
import binascii
import hmac
import http.server
import signal
import socket
import socketserver
import ssl
import sys
import threading

# Bodies are relayed and stored in pieces of at most this many bytes.
STREAM_CHUNK = 64 * 1024


class BadRequest(Exception):
    """A request body that breaks HTTP framing; answered with 400."""


class TestServer(http.server.ThreadingHTTPServer):
    """One thread per connection on 127.0.0.1, TLS when `tls` is an
    ssl.SSLContext, and the request log at `log_path` (None: no log)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port, handler_class, tls=None, log_path=None):
        self.tls = tls
        self.log_path = log_path
        self._log_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), handler_class)

    def server_bind(self):
        # HTTPServer.server_bind would resolve the host name (getfqdn), a DNS
        # round trip that can stall on machines without a resolver.
        socketserver.TCPServer.server_bind(self)
        self.server_name = "127.0.0.1"
        self.server_port = self.server_address[1]

    def redact(self, line):
        """The log line as written; a server holding secrets masks them."""
        return line

    def log_request_line(self, method, path, status):
        if not self.log_path:
            return
        line = self.redact("%s %s %s\n" % (method, path, status))
        with self._log_lock:
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


class TestHandler(http.server.BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive, the request log, and request bodies read
    with Content-Length or `Transfer-Encoding: chunked`."""

    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes; with Nagle's algorithm the
    # second waits for the client's delayed ACK (40 ms on Linux) on a
    # kept-alive connection. Go's net/http sets TCP_NODELAY too.
    disable_nagle_algorithm = True
    # An idle keep-alive connection is dropped after this many seconds.
    timeout = 60
    # Whether the request log keeps the query string of the path.
    log_query = False

    def version_string(self):
        return self.server_version

    def log_message(self, format, *args):
        pass  # log_request writes the request log

    def log_status(self, code):
        """The status as the request log shows it."""
        try:
            return str(int(getattr(code, "value", code)))
        except (TypeError, ValueError):
            return "0"

    def log_request(self, code="-", size="-"):
        path = getattr(self, "path", "-")
        if not self.log_query:
            path = path.split("?", 1)[0]
        method = getattr(self, "command", None) or "-"
        self.server.log_request_line(method, path, self.log_status(code))

    # --- request bodies -----------------------------------------------------

    def has_body(self):
        return ("Transfer-Encoding" in self.headers
                or int(self.headers.get("Content-Length", "0") or "0") > 0)

    def body_pieces(self, max_length=None):
        """The request body, decoded from chunked coding if need be, in
        pieces; BadRequest when the framing is broken or the body is longer
        than `max_length` (checked before reading when the length is
        announced)."""
        encoding = self.headers.get("Transfer-Encoding", "")
        if encoding:
            if encoding.strip().lower() != "chunked":
                raise BadRequest("unsupported Transfer-Encoding")
            pieces = self.chunked_pieces()
        else:
            pieces = self.sized_pieces(max_length)
        total = 0
        for piece in pieces:
            total += len(piece)
            if max_length is not None and total > max_length:
                raise BadRequest("body too large")
            yield piece

    def sized_pieces(self, max_length=None):
        try:
            left = int(self.headers.get("Content-Length", "0") or "0")
        except ValueError:
            raise BadRequest("bad Content-Length")
        if left < 0 or (max_length is not None and left > max_length):
            raise BadRequest("bad Content-Length")
        yield from self.exact_pieces(left, "body")

    def chunked_pieces(self):
        while True:
            line = self.rfile.readline(1024)
            if not line.endswith(b"\n"):
                raise BadRequest("truncated chunk header")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
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
                        return
            yield from self.exact_pieces(size, "chunk")
            if self.rfile.readline(3) not in (b"\r\n", b"\n"):
                raise BadRequest("missing chunk terminator")

    def exact_pieces(self, length, what):
        """`length` bytes of the body, in pieces; BadRequest when the
        connection ends before (`what`: "body" or "chunk")."""
        while length > 0:
            data = self.rfile.read(min(length, STREAM_CHUNK))
            if not data:
                raise BadRequest("truncated " + what)
            length -= len(data)
            yield data

    # --- responses ------------------------------------------------------------

    def send_body(self, status, body, content_type=None, headers=()):
        """A whole response with Content-Length (and `Connection: close`
        when the connection ends after it); returns `status`."""
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()
        return status

    def send_text(self, status, message, headers=()):
        return self.send_body(status, (message + "\n").encode("utf-8"),
                              "text/plain; charset=utf-8", headers)

    def write_chunk(self, data):
        """One piece of a `Transfer-Encoding: chunked` body; b"" ends it."""
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self.wfile.write(b"0\r\n\r\n")


def basic_auth_user(headers, credentials):
    """The user name when `headers` carry HTTP Basic `credentials`, a
    (user bytes, password bytes) pair; else None."""
    user, password = credentials
    scheme, _, value = headers.get("Authorization", "").partition(" ")
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


def read_credentials(path):
    """(user, password) as bytes from the one `user:password` line of a
    file, so that no secret is ever in argv."""
    with open(path, "rb") as f:
        line = f.readline().rstrip(b"\r\n")
    user, sep, password = line.partition(b":")
    if not sep or not user:
        raise ValueError("auth file must hold one user:password line")
    return user, password


def tls_context(prog, cert, key):
    """A server context for a PEM certificate and key, None without a
    certificate; exits with status 2 when they cannot be loaded."""
    if not cert:
        return None
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # TLS 1.2 stays allowed: the oldest version libciagent's clients accept.
    tls.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        tls.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        print("%s: certificate: %s" % (prog, e), file=sys.stderr)
        sys.exit(2)
    return tls


def serve(prog, port, make_server):
    """Builds the server with make_server(), prints `ready <port>` and
    serves until SIGTERM or SIGINT. Returns the exit status: 0, or 3 when
    the port cannot be bound."""
    try:
        server = make_server()
    except OSError as e:
        print("%s: bind 127.0.0.1:%d: %s" % (prog, port, e.strerror),
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
