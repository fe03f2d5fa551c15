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
import hashlib
import json
import os
import re
import secrets
import sys
import threading
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testserver  # noqa: E402
from testserver import BadRequest  # noqa: E402

STREAM_CHUNK = testserver.STREAM_CHUNK
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


class QuirksRegistry(testserver.TestServer):
    request_queue_size = 64

    def __init__(self, port, storage, credentials, log_path,
                 stream_patch_status):
        self.storage = storage
        self.stream_patch_status = stream_patch_status
        self.credentials = credentials
        self.tokens = set()
        self._lock = threading.Lock()
        super().__init__(port, RegistryHandler, log_path=log_path)
        self.realm = "http://127.0.0.1:%d/v2/token" % self.server_address[1]

    def issue_token(self):
        token = secrets.token_urlsafe(32)
        with self._lock:
            self.tokens.add(token)
        return token

    def valid_token(self, token):
        with self._lock:
            return token in self.tokens

class RegistryHandler(testserver.TestHandler):
    server_version = "ciagent-quirks-registry"
    timeout = 120
    log_query = True

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
        if testserver.basic_auth_user(self.headers,
                                      self.server.credentials) is None:
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
        self.send_content_head("application/octet-stream",
                               os.path.getsize(path), digest)
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

    def known_manifest(self, name, ref):
        """The digest `ref` (a tag or a digest) names; 404 when none."""
        digest = self.server.storage.resolve(name, ref)
        if digest is None:
            raise RegistryError(404, "MANIFEST_UNKNOWN",
                                "manifest unknown", detail=ref)
        return digest

    def manifest_get(self, name, ref):
        digest = self.known_manifest(name, ref)
        body, content_type = self.server.storage.read_manifest(name, digest)
        self.send_content_head(content_type, len(body), digest)
        if self.command == "GET":
            self.wfile.write(body)
        self.wfile.flush()

    manifest_head = manifest_get

    def manifest_delete(self, name, ref):
        storage = self.server.storage
        digest = self.known_manifest(name, ref)
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

    def body_pieces(self, limit=None):
        self.body_consumed = True
        total = 0
        for piece in super().body_pieces():
            total += len(piece)
            if limit is not None and total > limit:
                self.close_connection = True
                raise RegistryError(413, "SIZE_INVALID", "body too large")
            yield piece

    def send_content_head(self, content_type, length, digest):
        """The head of a 200 answer to GET or HEAD of a blob or manifest."""
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        self.send_header("Docker-Content-Digest", digest)
        self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
        self.end_headers()

    def respond(self, status, headers=(), body=b"", content_type=None):
        if not self.body_consumed and self.has_body():
            # A body nobody asked for is drained, keeping the connection.
            for _ in self.body_pieces():
                pass
        self.send_body(status, body, content_type, list(headers) + [
            ("Docker-Distribution-Api-Version", "registry/2.0")])

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
        credentials = testserver.read_credentials(args.auth_file)
    except (OSError, ValueError) as e:
        print("registry_quirks_server: --auth-file: %s" % e, file=sys.stderr)
        return 2
    return testserver.serve(
        "registry_quirks_server", args.port,
        lambda: QuirksRegistry(args.port, Storage(args.root), credentials,
                               args.log, args.stream_patch_status))


if __name__ == "__main__":
    sys.exit(main())
