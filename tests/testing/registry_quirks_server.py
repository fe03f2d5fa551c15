#!/usr/bin/python3
"""An OCI distribution registry with Gitea's quirks, for client tests.

A small but complete push/pull registry (blobs, chunked and monolithic
uploads, cross-repository mounts, manifests, tags) stored under --root, that
answers where Gitea's container registry differs from CNCF distribution:

- `GET /v2/` without a token: 401 with
  `WWW-Authenticate: Bearer realm="http://127.0.0.1:<port>/v2/token",
  service="container_registry",scope="*"`.
- `GET /v2/token` wants HTTP Basic with the --auth-file user and answers
  {"token": T} only: no expires_in, no access_token. Every other request
  needs `Authorization: Bearer T` with a token issued here (401 and the
  challenge otherwise).
- Upload locations are relative and carry no query:
  `Location: /v2/<name>/blobs/uploads/<uuid>`.
- `PATCH` without Content-Range is accepted only as the first write; after
  that it is refused with BLOB_UPLOAD_INVALID and status --stream-patch-status
  (416 by default; Gitea's own code answers 400). A Content-Range whose
  start is not the current size gets 416 with `Range: 0-<size-1>`.

Errors use the standard {"errors":[{"code","message","detail"}]} body.

Prints `ready <port>` on stdout once it accepts connections and exits with
status 0 on SIGTERM or SIGINT. --log FILE appends one line per request:
`<method> <path-with-query> <status>`; Authorization values and tokens never
reach the log, stdout or stderr.
"""

import argparse
import base64
import binascii
import hashlib
import hmac
import http.server
import json
import os
import re
import secrets
import signal
import socket
import socketserver
import sys
import threading
import urllib.parse
import uuid

STREAM_CHUNK = 64 * 1024
MAX_MANIFEST = 4 * 1024 * 1024
SERVICE = "container_registry"

NAME = r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
DIGEST = r"sha256:[0-9a-f]{64}"
ROUTES = [
    ("uploads", re.compile(r"^/v2/(?P<name>%s)/blobs/uploads/?$" % NAME)),
    ("upload", re.compile(
        r"^/v2/(?P<name>%s)/blobs/uploads/(?P<uuid>[0-9a-f-]{36})$" % NAME)),
    ("blob", re.compile(r"^/v2/(?P<name>%s)/blobs/(?P<digest>[^/]+)$" % NAME)),
    ("manifest", re.compile(
        r"^/v2/(?P<name>%s)/manifests/(?P<ref>[^/]+)$" % NAME)),
    ("tags", re.compile(r"^/v2/(?P<name>%s)/tags/list$" % NAME)),
]
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
INDEX_TYPES = {"application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json"}


class BadRequest(Exception):
    pass


class RegistryError(Exception):
    def __init__(self, status, code, message, detail=None, headers=()):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail
        self.headers = list(headers)


class Storage:
    """Blobs by digest, per-repository links, manifests and tags on disk.

    Blob data is shared (blobs/<hex>); a repository sees a blob only once it
    was uploaded to or mounted into it (repos/<name>/blobs/<hex>), as in a
    registry that scopes blobs by repository.
    """

    def __init__(self, root):
        self.root = root
        self.lock = threading.Lock()
        for sub in ("blobs", "uploads", "repos"):
            os.makedirs(os.path.join(root, sub), exist_ok=True)

    def blob_path(self, digest):
        return os.path.join(self.root, "blobs", digest.split(":", 1)[1])

    def repo_dir(self, name, *parts):
        return os.path.join(self.root, "repos", name, *parts)

    def has_blob(self, name, digest):
        return (os.path.exists(self.repo_dir(name, "blobs", digest[7:]))
                and os.path.exists(self.blob_path(digest)))

    def link_blob(self, name, digest):
        path = self.repo_dir(name, "blobs", digest[7:])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="ascii"):
            pass

    def upload_path(self, upload_id):
        return os.path.join(self.root, "uploads", upload_id)

    def new_upload(self, name):
        upload_id = str(uuid.uuid4())
        with open(self.upload_path(upload_id), "wb"):
            pass
        with open(self.upload_path(upload_id) + ".repo", "w",
                  encoding="utf-8") as f:
            f.write(name)
        return upload_id

    def upload_size(self, name, upload_id):
        """Current size, or None when the upload is unknown to `name`."""
        try:
            with open(self.upload_path(upload_id) + ".repo",
                      encoding="utf-8") as f:
                if f.read() != name:
                    return None
            return os.path.getsize(self.upload_path(upload_id))
        except OSError:
            return None

    def finish_upload(self, name, upload_id, digest):
        """Moves the upload to the blob store; False on a digest mismatch."""
        path = self.upload_path(upload_id)
        if file_digest(path) != digest:
            return False
        os.replace(path, self.blob_path(digest))
        self.drop_upload(upload_id)
        self.link_blob(name, digest)
        return True

    def drop_upload(self, upload_id):
        for suffix in ("", ".repo"):
            try:
                os.unlink(self.upload_path(upload_id) + suffix)
            except OSError:
                pass

    def manifest_path(self, name, digest):
        return self.repo_dir(name, "manifests", digest[7:])

    def resolve(self, name, ref):
        if ref.startswith("sha256:"):
            return ref if os.path.exists(self.manifest_path(name, ref)) else None
        try:
            with open(self.repo_dir(name, "tags", ref), encoding="ascii") as f:
                return f.read().strip()
        except OSError:
            return None

    def put_manifest(self, name, digest, content_type, body, tag):
        path = self.manifest_path(name, digest)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_file(path, body)
        write_file(path + ".type", content_type.encode("utf-8"))
        if tag is not None:
            os.makedirs(self.repo_dir(name, "tags"), exist_ok=True)
            write_file(self.repo_dir(name, "tags", tag), digest.encode())

    def read_manifest(self, name, digest):
        path = self.manifest_path(name, digest)
        with open(path, "rb") as f:
            body = f.read()
        with open(path + ".type", encoding="utf-8") as f:
            return body, f.read()

    def tags(self, name):
        try:
            return sorted(os.listdir(self.repo_dir(name, "tags")))
        except OSError:
            return None

    def has_repo(self, name):
        return os.path.isdir(self.repo_dir(name))


def write_file(path, data):
    tmp = "%s.%s.tmp" % (path, uuid.uuid4().hex)
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def file_digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            data = f.read(1024 * 1024)
            if not data:
                break
            h.update(data)
    return "sha256:" + h.hexdigest()


class QuirksRegistry(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, port, storage, credentials, log_path,
                 stream_patch_status):
        self.storage = storage
        self.stream_patch_status = stream_patch_status
        self.credentials = credentials
        self.log_path = log_path
        self.tokens = set()
        self._lock = threading.Lock()
        super().__init__(("127.0.0.1", port), RegistryHandler)
        self.realm = "http://127.0.0.1:%d/v2/token" % self.server_address[1]

    def server_bind(self):
        # HTTPServer.server_bind resolves the host name; skip that DNS trip.
        socketserver.TCPServer.server_bind(self)
        self.server_name = "127.0.0.1"
        self.server_port = self.server_address[1]

    def issue_token(self):
        token = secrets.token_urlsafe(32)
        with self._lock:
            self.tokens.add(token)
        return token

    def valid_token(self, token):
        with self._lock:
            return token in self.tokens

    def log_request_line(self, method, path, status):
        if not self.log_path:
            return
        with self._lock:
            with open(self.log_path, "a", encoding="utf-8") as log:
                log.write("%s %s %d\n" % (method, path, status))

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, socket.timeout)):
            return
        super().handle_error(request, client_address)


class RegistryHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without this, Nagle and
    # delayed ACKs add 40 ms to each small exchange.
    disable_nagle_algorithm = True
    server_version = "ciagent-quirks-registry"
    timeout = 120

    def version_string(self):
        return self.server_version

    def log_message(self, format, *args):
        pass  # log_request writes the request log

    def log_request(self, code="-", size="-"):
        method = getattr(self, "command", None) or "-"
        try:
            status = int(getattr(code, "value", code))
        except (TypeError, ValueError):
            status = 0
        self.server.log_request_line(method, getattr(self, "path", "-"),
                                     status)

    def do_any(self):
        self.body_consumed = False
        path, _, query = self.path.partition("?")
        self.query = urllib.parse.parse_qs(query, keep_blank_values=True)
        try:
            self.dispatch(path)
        except RegistryError as e:
            self.send_error_json(e)
        except BadRequest as e:
            self.close_connection = True
            self.send_error_json(RegistryError(400, "UNSUPPORTED", str(e)))
        if not self.body_consumed:
            # An answer sent before the body was read (401, 404, ...): the
            # connection cannot carry another request.
            if self.has_body():
                self.close_connection = True

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_any

    def param(self, name):
        values = self.query.get(name)
        return values[-1] if values else ""

    def dispatch(self, path):
        if path == "/v2/token":
            return self.token()
        self.require_token()
        if path in ("/v2", "/v2/"):
            if self.command not in ("GET", "HEAD"):
                raise unsupported()
            return self.respond(200, body=b"{}",
                                content_type="application/json")
        for route, pattern in ROUTES:
            m = pattern.match(path)
            if m is None:
                continue
            handler = getattr(self, "%s_%s" % (route, self.command.lower()),
                              None)
            if handler is None:
                raise unsupported()
            return handler(**m.groupdict())
        raise RegistryError(404, "NAME_UNKNOWN", "no such endpoint",
                            detail=path)

    # --- authentication ----------------------------------------------------

    def challenge(self):
        return ('Bearer realm="%s",service="%s",scope="*"'
                % (self.server.realm, SERVICE))

    def require_token(self):
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self.server.valid_token(token.strip()):
            return
        raise RegistryError(401, "UNAUTHORIZED", "authentication required",
                            headers=[("WWW-Authenticate", self.challenge())])

    def token(self):
        if self.command != "GET":
            raise unsupported()
        user, password = self.server.credentials
        scheme, _, value = self.headers.get("Authorization", "").partition(" ")
        ok = False
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value.strip(), validate=True)
            except (binascii.Error, ValueError):
                decoded = b""
            given_user, sep, given_password = decoded.partition(b":")
            user_ok = hmac.compare_digest(given_user, user)
            password_ok = hmac.compare_digest(given_password, password)
            ok = bool(sep) and user_ok and password_ok
        if not ok:
            raise RegistryError(401, "UNAUTHORIZED", "authentication required",
                                headers=[("WWW-Authenticate",
                                          'Basic realm="Gitea"')])
        body = json.dumps({"token": self.server.issue_token()}).encode()
        self.respond(200, body=body, content_type="application/json")

    # --- uploads -------------------------------------------------------------

    def upload_location(self, name, upload_id):
        return "/v2/%s/blobs/uploads/%s" % (name, upload_id)

    def uploads_post(self, name):
        storage = self.server.storage
        mount = self.param("mount")
        source = self.param("from")
        if mount and re.fullmatch(DIGEST, mount) and source and \
                storage.has_blob(source, mount):
            storage.link_blob(name, mount)
            return self.respond(201, headers=[
                ("Location", "/v2/%s/blobs/%s" % (name, mount)),
                ("Docker-Content-Digest", mount)])
        digest = self.param("digest")
        if digest:
            check_digest(digest)
            upload_id = storage.new_upload(name)
            self.append_body(upload_id)
            if not storage.finish_upload(name, upload_id, digest):
                storage.drop_upload(upload_id)
                raise digest_invalid(digest)
            return self.respond(201, headers=[
                ("Location", "/v2/%s/blobs/%s" % (name, digest)),
                ("Docker-Content-Digest", digest)])
        upload_id = storage.new_upload(name)
        self.respond(202, headers=[
            ("Location", self.upload_location(name, upload_id)),
            ("Range", "0-0"), ("Docker-Upload-Uuid", upload_id)])

    def known_upload(self, name, uuid):
        size = self.server.storage.upload_size(name, uuid)
        if size is None:
            raise RegistryError(404, "BLOB_UPLOAD_UNKNOWN",
                                "blob upload unknown to registry", detail=uuid)
        return size

    def upload_patch(self, name, uuid):
        size = self.known_upload(name, uuid)
        content_range = self.headers.get("Content-Range")
        if content_range is not None:
            m = re.fullmatch(r"\s*(?:bytes[ =])?(\d+)-(\d+)\s*", content_range)
            if m is None:
                raise RegistryError(416, "BLOB_UPLOAD_INVALID",
                                    "bad Content-Range", detail=content_range,
                                    headers=self.range_headers(name, uuid,
                                                               size))
            if int(m.group(1)) != size:
                raise RegistryError(416, "BLOB_UPLOAD_INVALID",
                                    "Content-Range does not start at the "
                                    "upload's size", detail=content_range,
                                    headers=self.range_headers(name, uuid,
                                                               size))
        elif size != 0:
            raise RegistryError(self.server.stream_patch_status,
                                "BLOB_UPLOAD_INVALID",
                                "Stream uploads after first write are not "
                                "allowed",
                                headers=self.range_headers(name, uuid, size))
        self.append_body(uuid)
        size = self.known_upload(name, uuid)
        self.respond(202, headers=self.range_headers(name, uuid, size))

    def range_headers(self, name, uuid, size):
        return [("Location", self.upload_location(name, uuid)),
                ("Range", "0-%d" % (size - 1 if size > 0 else 0)),
                ("Docker-Upload-Uuid", uuid)]

    def upload_get(self, name, uuid):
        size = self.known_upload(name, uuid)
        self.respond(204, headers=self.range_headers(name, uuid, size))

    def upload_put(self, name, uuid):
        storage = self.server.storage
        self.known_upload(name, uuid)
        digest = self.param("digest")
        check_digest(digest)
        self.append_body(uuid)
        if not storage.finish_upload(name, uuid, digest):
            raise digest_invalid(digest)
        self.respond(201, headers=[
            ("Location", "/v2/%s/blobs/%s" % (name, digest)),
            ("Docker-Content-Digest", digest)])

    def upload_delete(self, name, uuid):
        self.known_upload(name, uuid)
        self.server.storage.drop_upload(uuid)
        self.respond(204)

    def append_body(self, upload_id):
        path = self.server.storage.upload_path(upload_id)
        with open(path, "ab") as f:
            for piece in self.body_pieces():
                f.write(piece)

    # --- blobs ----------------------------------------------------------------

    def blob_head(self, name, digest):
        self.blob_get(name, digest)

    def blob_get(self, name, digest):
        storage = self.server.storage
        if not re.fullmatch(DIGEST, digest) or not storage.has_blob(name,
                                                                    digest):
            raise RegistryError(404, "BLOB_UNKNOWN",
                                "blob unknown to registry", detail=digest)
        path = storage.blob_path(digest)
        size = os.path.getsize(path)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.send_header("Docker-Content-Digest", digest)
        self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
        self.end_headers()
        if self.command == "GET":
            with open(path, "rb") as f:
                while True:
                    data = f.read(STREAM_CHUNK)
                    if not data:
                        break
                    self.wfile.write(data)
        self.wfile.flush()

    def blob_delete(self, name, digest):
        path = self.server.storage.repo_dir(name, "blobs", digest[7:])
        if not os.path.exists(path):
            raise RegistryError(404, "BLOB_UNKNOWN",
                                "blob unknown to registry", detail=digest)
        os.unlink(path)
        self.respond(202)

    # --- manifests -------------------------------------------------------------

    def manifest_put(self, name, ref):
        storage = self.server.storage
        tag = None
        if ref.startswith("sha256:"):
            check_digest(ref)
        elif TAG.match(ref):
            tag = ref
        else:
            raise RegistryError(400, "MANIFEST_INVALID", "Tag is invalid",
                                detail=ref)
        body = b"".join(self.body_pieces(limit=MAX_MANIFEST))
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if tag is None and digest != ref:
            raise digest_invalid(ref)
        try:
            manifest = json.loads(body)
        except ValueError:
            raise RegistryError(400, "MANIFEST_INVALID",
                                "manifest invalid", detail="not JSON")
        if not isinstance(manifest, dict):
            raise RegistryError(400, "MANIFEST_INVALID", "manifest invalid")
        content_type = (self.headers.get("Content-Type")
                        or manifest.get("mediaType")
                        or "application/vnd.oci.image.manifest.v1+json")
        with storage.lock:
            for kind, child in references(manifest, content_type):
                present = (storage.resolve(name, child) == child
                           if kind == "manifest"
                           else storage.has_blob(name, child))
                if not present:
                    raise RegistryError(
                        400, "MANIFEST_BLOB_UNKNOWN",
                        "manifest references a manifest or blob unknown "
                        "to registry", detail={"digest": child})
            storage.put_manifest(name, digest, content_type, body, tag)
        self.respond(201, headers=[
            ("Location", "/v2/%s/manifests/%s" % (name, ref)),
            ("Docker-Content-Digest", digest)])

    def manifest_get(self, name, ref):
        storage = self.server.storage
        digest = storage.resolve(name, ref)
        if digest is None:
            raise RegistryError(404, "MANIFEST_UNKNOWN",
                                "manifest unknown", detail=ref)
        body, content_type = storage.read_manifest(name, digest)
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Docker-Content-Digest", digest)
        self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(body)
        self.wfile.flush()

    manifest_head = manifest_get

    def manifest_delete(self, name, ref):
        storage = self.server.storage
        digest = storage.resolve(name, ref)
        if digest is None:
            raise RegistryError(404, "MANIFEST_UNKNOWN",
                                "manifest unknown", detail=ref)
        if ref.startswith("sha256:"):
            os.unlink(storage.manifest_path(name, digest))
        else:
            os.unlink(storage.repo_dir(name, "tags", ref))
        self.respond(202)

    def tags_get(self, name):
        tags = self.server.storage.tags(name)
        if tags is None and not self.server.storage.has_repo(name):
            raise RegistryError(404, "NAME_UNKNOWN",
                                "repository name not known to registry",
                                detail=name)
        body = json.dumps({"name": name, "tags": tags or []}).encode()
        self.respond(200, body=body, content_type="application/json")

    # --- bodies and responses ------------------------------------------------

    def has_body(self):
        return ("Transfer-Encoding" in self.headers
                or int(self.headers.get("Content-Length", "0") or "0") > 0)

    def body_pieces(self, limit=None):
        self.body_consumed = True
        total = 0
        encoding = self.headers.get("Transfer-Encoding", "")
        if encoding:
            if encoding.strip().lower() != "chunked":
                raise BadRequest("unsupported Transfer-Encoding")
            pieces = self.chunked_pieces()
        else:
            pieces = self.sized_pieces()
        for piece in pieces:
            total += len(piece)
            if limit is not None and total > limit:
                self.close_connection = True
                raise RegistryError(413, "SIZE_INVALID", "body too large")
            yield piece

    def sized_pieces(self):
        try:
            left = int(self.headers.get("Content-Length", "0") or "0")
        except ValueError:
            raise BadRequest("bad Content-Length")
        while left > 0:
            data = self.rfile.read(min(left, STREAM_CHUNK))
            if not data:
                raise BadRequest("truncated body")
            left -= len(data)
            yield data

    def chunked_pieces(self):
        while True:
            line = self.rfile.readline(1024)
            if not line.endswith(b"\n"):
                raise BadRequest("truncated chunk header")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise BadRequest("bad chunk size")
            if size == 0:
                while True:
                    trailer = self.rfile.readline(8192)
                    if not trailer.endswith(b"\n"):
                        raise BadRequest("truncated trailer")
                    if trailer in (b"\r\n", b"\n"):
                        return
            while size > 0:
                data = self.rfile.read(min(size, STREAM_CHUNK))
                if not data:
                    raise BadRequest("truncated chunk")
                size -= len(data)
                yield data
            if self.rfile.readline(3) not in (b"\r\n", b"\n"):
                raise BadRequest("missing chunk terminator")

    def respond(self, status, headers=(), body=b"", content_type=None):
        if not self.body_consumed and self.has_body():
            # A body nobody asked for is drained, keeping the connection.
            for _ in self.body_pieces():
                pass
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    def send_error_json(self, error):
        entry = {"code": error.code, "message": error.message}
        if error.detail is not None:
            entry["detail"] = error.detail
        body = json.dumps({"errors": [entry]}).encode()
        if not self.body_consumed and self.has_body():
            self.close_connection = True
        self.body_consumed = True
        self.respond(error.status, headers=error.headers, body=body,
                     content_type="application/json")


def unsupported():
    return RegistryError(405, "UNSUPPORTED", "the operation is unsupported")


def digest_invalid(digest):
    return RegistryError(400, "DIGEST_INVALID",
                         "provided digest did not match uploaded content",
                         detail=digest)


def check_digest(digest):
    if not re.fullmatch(DIGEST, digest or ""):
        raise RegistryError(400, "DIGEST_INVALID",
                            "provided digest is not a sha256 digest",
                            detail=digest)


def references(manifest, content_type):
    """(kind, digest) pairs a manifest needs present: blobs or manifests."""
    media_type = manifest.get("mediaType") or content_type
    out = []
    if media_type in INDEX_TYPES or ("manifests" in manifest
                                     and "layers" not in manifest):
        for entry in manifest.get("manifests") or []:
            if isinstance(entry, dict) and "digest" in entry:
                out.append(("manifest", entry["digest"]))
        return out
    config = manifest.get("config")
    if isinstance(config, dict) and "digest" in config:
        out.append(("blob", config["digest"]))
    for layer in manifest.get("layers") or []:
        if isinstance(layer, dict) and "digest" in layer:
            out.append(("blob", layer["digest"]))
    return out


def read_credentials(path):
    with open(path, "rb") as f:
        line = f.readline().rstrip(b"\r\n")
    user, sep, password = line.partition(b":")
    if not sep or not user:
        raise ValueError("auth file must hold one user:password line")
    return user, password


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="storage directory")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--auth-file", required=True,
                        help="file with one user:password line")
    parser.add_argument("--log", help="append one line per request here")
    parser.add_argument("--stream-patch-status", type=int, default=416,
                        help="status refusing a PATCH without Content-Range "
                             "after the first write")
    args = parser.parse_args()
    try:
        credentials = read_credentials(args.auth_file)
    except (OSError, ValueError) as e:
        print("registry_quirks_server: --auth-file: %s" % e, file=sys.stderr)
        return 2
    try:
        server = QuirksRegistry(args.port, Storage(args.root), credentials,
                                args.log, args.stream_patch_status)
    except OSError as e:
        print("registry_quirks_server: bind 127.0.0.1:%d: %s"
              % (args.port, e.strerror), file=sys.stderr)
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
