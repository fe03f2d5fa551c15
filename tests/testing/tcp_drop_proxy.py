#!/usr/bin/python3
"""A TCP proxy that cuts connections mid-response, for fetch retry tests.

Listens on 127.0.0.1 (a free port unless --port is given) and forwards every
connection, byte for byte in both directions, to 127.0.0.1:--upstream-port.
A connection whose upstream-to-client bytes reach --drop-after is cut at
exactly that byte count: the proxy closes both sides with a TCP RST (no
FIN, no rest of the response), as when a server or load balancer dies in
the middle of a transfer. Only the first --drops connections that get that
far are cut; later ones, and connections whose responses stay shorter,
pass through untouched.

Prints `ready <port>` on stdout once it accepts connections and exits with
status 0 on SIGTERM or SIGINT. After every connection it replaces --state
FILE (atomically) with `connections <accepted> drops <cut>\n`.
"""

import argparse
import os
import signal
import socket
import struct
import sys
import threading

CHUNK = 64 * 1024


class DropProxy:
    def __init__(self, args):
        self.upstream_port = args.upstream_port
        self.drop_after = args.drop_after
        self.drops_left = args.drops
        self.state_path = args.state
        self.lock = threading.Lock()
        self.accepted = 0
        self.cut = 0
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", args.port))
        self.listener.listen(64)
        self.write_state()

    @property
    def port(self):
        return self.listener.getsockname()[1]

    def write_state(self):
        if not self.state_path:
            return
        tmp = self.state_path + ".tmp"
        with open(tmp, "w") as f:
            f.write("connections %d drops %d\n" % (self.accepted, self.cut))
        os.replace(tmp, self.state_path)

    def serve_forever(self):
        while True:
            client, _ = self.listener.accept()
            with self.lock:
                self.accepted += 1
                self.write_state()
            threading.Thread(target=self.handle, args=(client,),
                             daemon=True).start()

    def take_drop(self):
        with self.lock:
            if self.drops_left <= 0:
                return False
            self.drops_left -= 1
            self.cut += 1
            self.write_state()
            return True

    def handle(self, client):
        try:
            upstream = socket.create_connection(("127.0.0.1",
                                                 self.upstream_port))
        except OSError:
            reset(client)
            return
        requests = threading.Thread(target=pump_requests,
                                    args=(client, upstream), daemon=True)
        requests.start()
        sent = 0
        armed = True
        cut = False
        try:
            while True:
                data = upstream.recv(CHUNK)
                if not data:
                    break
                if armed and sent + len(data) >= self.drop_after:
                    if self.take_drop():
                        client.sendall(data[:self.drop_after - sent])
                        cut = True
                        break
                    armed = False
                client.sendall(data)
                sent += len(data)
        except OSError:
            pass
        # A socket closed while another thread sits in recv() on it stays
        # open until that recv returns: wake the request pump first (SHUT_RD
        # sends nothing to the peer), then close.
        if not cut:
            shutdown_quietly(client, socket.SHUT_WR)
        shutdown_quietly(client, socket.SHUT_RD)
        shutdown_quietly(upstream, socket.SHUT_RDWR)
        requests.join(5)
        if cut:
            reset(client)
        else:
            close_quietly(client)
        close_quietly(upstream)


def pump_requests(client, upstream):
    try:
        while True:
            data = client.recv(CHUNK)
            if not data:
                shutdown_quietly(upstream, socket.SHUT_WR)
                return
            upstream.sendall(data)
    except OSError:
        pass


def shutdown_quietly(sock, how):
    try:
        sock.shutdown(how)
    except OSError:
        pass


def reset(sock):
    # SO_LINGER with a zero timeout turns close() into an RST.
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                        struct.pack("ii", 1, 0))
    except OSError:
        pass
    close_quietly(sock)


def close_quietly(sock):
    try:
        sock.close()
    except OSError:
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--upstream-port", type=int, required=True)
    parser.add_argument("--drop-after", type=int, required=True,
                        help="response bytes after which a connection is cut")
    parser.add_argument("--drops", type=int, default=1,
                        help="how many connections to cut")
    parser.add_argument("--state", default="")
    args = parser.parse_args()
    if args.drop_after < 1 or args.drops < 0:
        parser.error("--drop-after must be >= 1 and --drops >= 0")

    def stop(signo, frame):
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    proxy = DropProxy(args)
    print("ready %d" % proxy.port, flush=True)
    proxy.serve_forever()


if __name__ == "__main__":
    main()
