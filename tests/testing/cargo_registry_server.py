#!/usr/bin/python3
"""A private cargo registry (sparse index, token auth) for integration tests.

Serves the `.crate` files found in --crates (as `cargo package` writes them,
`<name>-<version>.crate`) the way a sparse registry such as Gitea's does:

  GET /index/config.json         {"dl": ..., "api": ..., "auth-required": true}
  GET /index/<prefix>/<name>     one JSON line per version (the index file)
  GET /api/v1/crates/<name>/<version>/download   the .crate file

The index entries are written here from each archive's own Cargo.toml and
the archive's SHA-256; crates with dependencies are refused (exit 2): the
tests need none, and writing their index entries right is cargo's job.

Every request must carry `Authorization: <token>`, the token being the
first line of --token-file (cargo sends a registry token verbatim); a
request without it, or with another, gets 401 and nothing else. The request
log (--log) holds method, path and status; the token never reaches the log,
stdout or stderr. --fail-first N answers the first N requests with 503, as a
registry that is briefly down.

Prints `ready <port>` on stdout once it accepts connections, exits 0 on
SIGTERM or SIGINT (the contract of testserver.py).
"""

import argparse
import hashlib
import hmac
import io
import json
import os
import sys
import tarfile
import threading
import tomllib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testserver  # noqa: E402


def index_path(name):
    """The index file of `name` under /index/, as cargo's sparse protocol
    lays it out (1/, 2/, 3/<first char>/, else <ab>/<cd>/)."""
    name = name.lower()
    if len(name) <= 2:
        return "%d/%s" % (len(name), name)
    if len(name) == 3:
        return "3/%s/%s" % (name[0], name)
    return "%s/%s/%s" % (name[0:2], name[2:4], name)


def read_crate(path):
    """(name, version, index line) of one .crate archive."""
    with open(path, "rb") as f:
        data = f.read()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        manifest = next(m for m in archive.getmembers()
                        if m.name.count("/") == 1
                        and m.name.endswith("/Cargo.toml"))
        toml = tomllib.loads(
            archive.extractfile(manifest).read().decode("utf-8"))
    package = toml["package"]
    if any(key.endswith("dependencies") and toml[key] for key in toml):
        raise ValueError("%s: crates with dependencies are not served" % path)
    entry = {
        "name": package["name"],
        "vers": package["version"],
        "deps": [],
        "cksum": hashlib.sha256(data).hexdigest(),
        "features": toml.get("features", {}),
        "yanked": False,
    }
    return package["name"], package["version"], json.dumps(entry) + "\n"


class RegistryServer(testserver.TestServer):
    def __init__(self, port, crates, index, token, fail_first, log_path):
        self.crates = crates  # {(name, version): .crate path}
        self.index = index    # index path -> the index file's bytes
        self.token = token
        self.fail_left = fail_first
        self.fail_lock = threading.Lock()
        super().__init__(port, Handler, log_path=log_path)

    def should_fail(self):
        with self.fail_lock:
            if self.fail_left > 0:
                self.fail_left -= 1
                return True
            return False


class Handler(testserver.TestHandler):
    server_version = "cargo-registry-test/1"

    def do_GET(self):
        if self.server.should_fail():
            return self.send_text(503, "registry unavailable (injected)")
        given = self.headers.get("Authorization", "").encode("utf-8")
        if not hmac.compare_digest(given, self.server.token):
            return self.send_text(401, "token missing or rejected")
        path = self.path.split("?", 1)[0]
        base = "http://%s:%d" % self.server.server_address[:2]
        if path == "/index/config.json":
            body = json.dumps({"dl": base + "/api/v1/crates",
                               "api": base,
                               "auth-required": True}).encode("utf-8")
            return self.send_body(200, body, "application/json")
        if path.startswith("/index/"):
            body = self.server.index.get(path[len("/index/"):])
            if body is None:
                return self.send_text(404, "no such crate")
            return self.send_body(200, body, "text/plain")
        parts = path.split("/")
        # /api/v1/crates/<name>/<version>/download
        if (len(parts) == 7 and parts[1:4] == ["api", "v1", "crates"]
                and parts[6] == "download"):
            crate = self.server.crates.get((parts[4], parts[5]))
            if crate is None:
                return self.send_text(404, "no such crate")
            with open(crate, "rb") as f:
                return self.send_body(200, f.read(),
                                      "application/octet-stream")
        return self.send_text(404, "not found")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--crates", required=True,
                        help="directory of <name>-<version>.crate files")
    parser.add_argument("--token-file", required=True,
                        help="file whose first line is the token")
    parser.add_argument("--port", type=int, required=True,
                        help="TCP port on 127.0.0.1 (0 picks one)")
    parser.add_argument("--fail-first", type=int, default=0,
                        help="answer the first N requests with 503")
    parser.add_argument("--log", help="append one line per request here")
    args = parser.parse_args()
    prog = os.path.basename(sys.argv[0])
    try:
        with open(args.token_file, "rb") as f:
            token = f.readline().rstrip(b"\r\n")
        crates = {}
        index = {}
        for file in sorted(os.listdir(args.crates)):
            if not file.endswith(".crate"):
                continue
            name, version, line = read_crate(os.path.join(args.crates, file))
            crates[(name, version)] = os.path.join(args.crates, file)
            key = index_path(name)
            index[key] = index.get(key, b"") + line.encode("utf-8")
    except (OSError, ValueError, KeyError, StopIteration,
            tarfile.TarError, tomllib.TOMLDecodeError) as e:
        print("%s: %s" % (prog, e), file=sys.stderr)
        return 2
    if not token:
        print("%s: empty token" % prog, file=sys.stderr)
        return 2

    return testserver.serve(
        prog, args.port,
        lambda: RegistryServer(args.port, crates, index, token,
                               args.fail_first, args.log))


if __name__ == "__main__":
    sys.exit(main())
