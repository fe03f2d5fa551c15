#!/usr/bin/python3
"""An HTTP reverse proxy that injects faults, for registry client tests.

Forwards requests on 127.0.0.1:--port to the http:// --upstream, except a
--fault-rate fraction of them (drawn from a generator seeded with --seed,
so a sequential client sees the same faults on every run), which get one of
these instead, chosen uniformly among the enabled kinds:
  500 Internal Server Error
  503 Service Unavailable, with `Retry-After: --retry-after`
  429 Too Many Requests, with `Retry-After: --retry-after`
  a connection reset (--reset-connections): the request head is read, then
  the connection is closed with a TCP RST and no response.
A faulted request's body is read and discarded before the 5xx/429 answer, so
the connection stays usable. --methods GET,PUT restricts faults to those
methods.

Bodies are streamed both ways in 64 KiB pieces, never held whole: request
bodies with Content-Length or `Transfer-Encoding: chunked`, responses with
Content-Length, or chunked when the upstream gives no length. Client
connections are kept alive (HTTP/1.1), each with its own upstream
connection. `Location` headers pointing at the upstream are rewritten to
point at the proxy; all other end-to-end headers (WWW-Authenticate,
Docker-Content-Digest, Range, ...) pass through unchanged. The Host header
sent upstream names the upstream.

Prints `ready <port>` on stdout once it accepts connections and exits with
status 0 on SIGTERM or SIGINT. On every request, before answering it, it
replaces --state FILE with `requests <seen> faults <injected>\n`. --log FILE appends one line per
request, `<method> <path> <status>`, with `reset` as the status of a reset
and ` injected` after a faulted status; the Authorization header is never
logged.
"""

import argparse
import http.client
import os
import random
import socket
import struct
import sys
import threading
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testserver  # noqa: E402
from testserver import BadRequest  # noqa: E402

STREAM_CHUNK = testserver.STREAM_CHUNK
# Hop-by-hop headers (RFC 9110 7.6.1) are the proxy's own business.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te",
              "trailer", "transfer-encoding", "upgrade",
              "proxy-authenticate", "proxy-authorization", "expect"}


class FaultProxy(testserver.TestServer):
    # Clients such as a registry pusher open many connections at once.
    request_queue_size = 64

    def __init__(self, port, upstream, args):
        self.upstream_host, self.upstream_port, self.upstream_netloc = upstream
        self.upstream_prefix = "http://%s" % self.upstream_netloc
        self.fault_rate = args.fault_rate
        self.retry_after = args.retry_after
        self.kinds = ["500", "503", "429"]
        if args.reset_connections:
            self.kinds.append("reset")
        self.methods = {m.strip().upper() for m in args.methods.split(",")
                        if m.strip()}
        self.state_path = args.state
        self._random = random.Random(args.seed)
        self._lock = threading.Lock()
        self._seen = 0
        self._faults = 0
        self._resets = set()
        super().__init__(port, ProxyHandler, log_path=args.log)
        self.proxy_prefix = "http://127.0.0.1:%d" % self.server_address[1]
        self.write_state()

    def decide(self, method):
        """The fault kind for the next request, or None to forward it.

        Counts the request, and the fault, at once: the state file is up to
        date before the client gets any answer.
        """
        with self._lock:
            self._seen += 1
            kind = None
            if not self.methods or method in self.methods:
                # Both draws always happen, so the sequence does not depend
                # on which requests were faulted.
                roll = self._random.random()
                choice = self._random.choice(self.kinds)
                if roll < self.fault_rate:
                    kind = choice
                    self._faults += 1
            self.write_state()
            return kind

    def write_state(self):
        if not self.state_path:
            return
        tmp = self.state_path + ".tmp"
        with open(tmp, "w", encoding="ascii") as f:
            f.write("requests %d faults %d\n" % (self._seen, self._faults))
        os.replace(tmp, self.state_path)

    def mark_reset(self, connection):
        with self._lock:
            self._resets.add(connection)

    def shutdown_request(self, request):
        # socketserver would shut the write side down first, sending a FIN
        # before the RST; a reset connection gets the RST alone.
        with self._lock:
            reset = request in self._resets
            self._resets.discard(request)
        if reset:
            self.close_request(request)
        else:
            super().shutdown_request(request)


class ProxyHandler(testserver.TestHandler):
    server_version = "ciagent-fault-proxy"
    timeout = 120
    log_query = True

    def setup(self):
        super().setup()
        self.upstream = None
        self.injected = False

    def finish(self):
        try:
            super().finish()
        finally:
            if self.upstream is not None:
                self.upstream.close()

    def log_status(self, code):
        status = super().log_status(code)
        return status + " injected" if self.injected else status

    def do_any(self):
        method = self.command
        kind = self.server.decide(method)
        self.injected = kind is not None
        if kind == "reset":
            self.server.log_request_line(method, self.path, "reset")
            self.reset_connection()
            return
        if kind is not None:
            status = int(kind)
            try:
                for _ in self.body_pieces():
                    pass
            except (BadRequest, OSError):
                self.close_connection = True
            headers = []
            if status in (429, 503):
                headers.append(("Retry-After", str(self.server.retry_after)))
            body = (b'{"errors":[{"code":"UNAVAILABLE","message":'
                    b'"fault injected by the test proxy"}]}\n')
            self.send_body(status, body, "application/json", headers)
            return
        self.forward()

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_any
    do_OPTIONS = do_any

    def reset_connection(self):
        # SO_LINGER with a zero timeout makes close() send RST, as a crashed
        # load balancer or a dropped connection would.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                   struct.pack("ii", 1, 0))
        self.close_connection = True
        self.server.mark_reset(self.connection)

    # --- forwarding -----------------------------------------------------------

    def connect_upstream(self):
        if self.upstream is None:
            conn = http.client.HTTPConnection(
                self.server.upstream_host, self.server.upstream_port,
                timeout=120)
            conn.connect()
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.upstream = conn
        return self.upstream

    def send_head_upstream(self, conn):
        conn.putrequest(self.command, self.path, skip_host=True,
                        skip_accept_encoding=True)
        conn.putheader("Host", self.server.upstream_netloc)
        chunked = "Transfer-Encoding" in self.headers
        for name, value in self.headers.items():
            lower = name.lower()
            if lower in HOP_BY_HOP or lower == "host":
                continue
            if chunked and lower == "content-length":
                continue
            conn.putheader(name, value)
        if chunked:
            conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        return chunked

    def forward(self):
        """Relays one exchange; returns the status for the log."""
        with_body = self.has_body()
        for attempt in range(2):
            try:
                conn = self.connect_upstream()
                chunked = self.send_head_upstream(conn)
            except OSError:
                self.drop_upstream()
                if attempt == 0:
                    continue
                self.close_connection = True
                return self.send_text(502, "upstream unreachable")
            if with_body:
                try:
                    self.send_body_upstream(conn, chunked)
                except BadRequest as e:
                    self.drop_upstream()
                    self.close_connection = True
                    return self.send_text(400, str(e))
                except OSError:
                    # The upstream answered early and stopped reading (a 401
                    # on a blob PUT, say): relay its answer, then close, as
                    # the rest of the client's body was not consumed.
                    self.close_connection = True
            try:
                response = conn.getresponse()
            except (OSError, http.client.HTTPException):
                self.drop_upstream()
                if attempt == 0 and not with_body:
                    # A kept-alive upstream connection closed while idle;
                    # a bodiless request can simply be sent again.
                    continue
                self.close_connection = True
                return self.send_text(502, "no response from upstream")
            return self.relay_response(response)
        return self.send_text(502, "upstream unreachable")

    def send_body_upstream(self, conn, chunked):
        for piece in self.body_pieces():
            if chunked:
                conn.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
            else:
                conn.send(piece)
        if chunked:
            conn.send(b"0\r\n\r\n")

    def drop_upstream(self):
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None

    def relay_response(self, response):
        status = response.status
        self.send_response(status, response.reason)
        length = None
        for name, value in response.getheaders():
            lower = name.lower()
            if lower in HOP_BY_HOP:
                continue
            if lower == "content-length":
                length = value
                continue
            if lower == "location" and value.startswith(
                    self.server.upstream_prefix):
                value = (self.server.proxy_prefix
                         + value[len(self.server.upstream_prefix):])
            self.send_header(name, value)
        no_body = self.command == "HEAD" or status in (204, 304) or \
            100 <= status < 200
        chunked = False
        if length is not None:
            self.send_header("Content-Length", length)
        elif not no_body:
            chunked = True
            self.send_header("Transfer-Encoding", "chunked")
        if response.will_close:
            self.close_connection = True
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        try:
            if not no_body:
                while True:
                    data = response.read(STREAM_CHUNK)
                    if not data:
                        break
                    if chunked:
                        self.write_chunk(data)
                    else:
                        self.wfile.write(data)
                if chunked:
                    self.write_chunk(b"")
            else:
                response.read()
        except (OSError, http.client.HTTPException):
            # The upstream broke off mid-body: only closing tells the client.
            self.drop_upstream()
            self.close_connection = True
        self.wfile.flush()
        if response.will_close:
            self.drop_upstream()
        return status


def parse_upstream(url):
    """(host, port, netloc) of an http:// URL; ValueError for another."""
    upstream = urllib.parse.urlsplit(url)
    if upstream.scheme != "http" or not upstream.hostname:
        raise ValueError("--upstream must be an http:// URL")
    return upstream.hostname, upstream.port or 80, upstream.netloc


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True,
                        help="http://host:port of the real server")
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--retry-after", type=int, default=1)
    parser.add_argument("--reset-connections", action="store_true")
    parser.add_argument("--methods", default="",
                        help="comma-separated methods that may be faulted")
    parser.add_argument("--state", help="file replaced with the counters")
    parser.add_argument("--log", help="append one line per request here")
    args = parser.parse_args()

    try:
        upstream = parse_upstream(args.upstream)
    except ValueError as e:
        print("registry_fault_proxy: %s" % e, file=sys.stderr)
        return 2
    return testserver.serve(
        "registry_fault_proxy", args.port,
        lambda: FaultProxy(args.port, upstream, args))


if __name__ == "__main__":
    sys.exit(main())
