#!/usr/bin/python3
"""An HTTPS forward proxy for integration tests: HTTP CONNECT tunnels.

Answers `CONNECT host:port HTTP/1.1` by connecting to host:port and relaying
bytes both ways until either side closes; the TLS inside the tunnel is the
client's and the server's, never looked at. Any other request gets 405.
The request log (--log) has one line per tunnel, `CONNECT <host:port>
<status>` (502 when the target cannot be reached), so a test can tell that
its client went through the proxy.

Prints `ready <port>` on stdout once it accepts connections, exits 0 on
SIGTERM or SIGINT (the contract of testserver.py).
"""

import argparse
import os
import select
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testserver  # noqa: E402


class ProxyHandler(testserver.TestHandler):
    server_version = "connect-proxy-test/1"
    # Tunnels may idle while a fetch indexes a pack.
    timeout = 300
    log_query = True

    def do_CONNECT(self):
        host, _, port = self.path.rpartition(":")
        try:
            upstream = socket.create_connection((host.strip("[]"), int(port)),
                                                timeout=10)
        except (OSError, ValueError):
            self.send_text(502, "cannot reach " + self.path)
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        self.relay(self.connection, upstream)
        self.close_connection = True

    def relay(self, client, upstream):
        upstream.settimeout(None)
        sockets = [client, upstream]
        try:
            while True:
                readable, _, _ = select.select(sockets, [], [], 300)
                if not readable:
                    return
                for source in readable:
                    data = source.recv(testserver.STREAM_CHUNK)
                    if not data:
                        return
                    (upstream if source is client else client).sendall(data)
        except OSError:
            return
        finally:
            upstream.close()

    def do_GET(self):
        self.send_text(405, "only CONNECT")

    do_POST = do_GET


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True,
                        help="TCP port on 127.0.0.1 (0 picks one)")
    parser.add_argument("--log", help="append one line per tunnel here")
    args = parser.parse_args()
    return testserver.serve(
        os.path.basename(sys.argv[0]), args.port,
        lambda: testserver.TestServer(args.port, ProxyHandler,
                                      log_path=args.log))


if __name__ == "__main__":
    sys.exit(main())
