#!/usr/bin/python3
"""A Docker/OCI token service (the Bearer realm) for integration tests.

Answers `GET /token?service=S&scope=repository:NAME:pull,push` for the one
user whose `user:password` line is in --auth-file (HTTP Basic, 401 without
it), with a JWT that the CNCF distribution registry accepts when its
`auth.token` section names the same --service, --issuer and, as
`rootcertbundle`, the certificate --cert. The token carries that
certificate in its `x5c` header: distribution verifies the chain against
the bundle and then the ES256 signature with the certificate's key.

`scope` may repeat, or hold several scopes separated by spaces. Every
repository scope is granted with exactly the actions it asks for; other
scope types are ignored. The answer is
  {"token": T, "access_token": T, "expires_in": N, "issued_at": RFC3339}
where `expires_in` is left out with --omit-expires-in (as Gitea does); the
JWT then still expires, after 60 s.

Prints `ready <port>` on stdout once it accepts connections, and exits with
status 0 on SIGTERM or SIGINT. With --tls-cert/--tls-key it serves HTTPS.

--log FILE appends one line per request: `<method> <path> <status>`, the
path without its query. Credentials never reach the log, stdout or stderr.
"""

import argparse
import base64
import datetime
import json
import os
import sys
import time
import urllib.parse

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testserver  # noqa: E402

# Lifetime of a token whose expires_in is not announced.
DEFAULT_LIFETIME_S = 60


class TokenServer(testserver.TestServer):
    def __init__(self, port, tls, credentials, signer, options, log_path):
        self.credentials = credentials
        self.signer = signer  # (private key, base64 DER certificate)
        self.options = options
        super().__init__(port, TokenRequestHandler, tls, log_path)


class TokenRequestHandler(testserver.TestHandler):
    server_version = "ciagent-registry-token-test"

    def do_GET(self):
        path, _, query = self.path.partition("?")
        if path != "/token":
            self.send_json(404, {"errors": [{"code": "NOT_FOUND",
                                             "message": "no such endpoint"}]})
            return
        user = self.authenticated_user()
        if user is None:
            self.send_json(
                401,
                {"errors": [{"code": "UNAUTHORIZED",
                             "message": "authentication required"}]},
                [("WWW-Authenticate", 'Basic realm="ciagent-test-token"')])
            return
        params = urllib.parse.parse_qs(query, keep_blank_values=True)
        options = self.server.options
        service = params.get("service", [options.service])[-1]
        if service != options.service:
            self.send_json(400, {"errors": [{
                "code": "DENIED", "message": "unknown service",
                "detail": service}]})
            return
        access = []
        for value in params.get("scope", []):
            for scope in value.split(" "):
                entry = parse_scope(scope)
                if entry is not None:
                    access.append(entry)
        now = int(time.time())
        lifetime = options.expires_in
        if options.omit_expires_in:
            lifetime = DEFAULT_LIFETIME_S
        claims = {
            "iss": options.issuer,
            "sub": user,
            "aud": service,
            "exp": now + lifetime,
            "nbf": now - 1,
            "iat": now,
            "jti": base64.urlsafe_b64encode(os.urandom(12)).decode("ascii"),
            "access": access,
        }
        key, cert_b64 = self.server.signer
        token = jwt.encode(claims, key, algorithm="ES256",
                           headers={"x5c": [cert_b64]})
        issued_at = datetime.datetime.fromtimestamp(
            now, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        answer = {"token": token, "access_token": token,
                  "issued_at": issued_at}
        if not options.omit_expires_in:
            answer["expires_in"] = options.expires_in
        self.send_json(200, answer)

    def authenticated_user(self):
        return testserver.basic_auth_user(self.headers,
                                          self.server.credentials)

    def send_json(self, status, obj, headers=()):
        self.send_body(status, json.dumps(obj).encode("utf-8"),
                       "application/json", headers)


def parse_scope(scope):
    """{"type", "name", "actions"} for `repository:NAME:a,b`, else None.

    NAME may hold a port-qualified host (`host:5000/app`), so the actions
    are what follows the last ':'.
    """
    kind, sep, rest = scope.partition(":")
    if not sep or kind != "repository":
        return None
    name, sep, actions = rest.rpartition(":")
    if not sep or not name:
        return None
    wanted = [a for a in actions.split(",") if a]
    return {"type": "repository", "name": name, "actions": wanted}


def load_signer(key_path, cert_path):
    with open(key_path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    with open(cert_path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    der = cert.public_bytes(serialization.Encoding.DER)
    return key, base64.b64encode(der).decode("ascii")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--auth-file", required=True,
                        help="file with one user:password line")
    parser.add_argument("--key", required=True,
                        help="PEM EC P-256 private key signing the tokens")
    parser.add_argument("--cert", required=True,
                        help="PEM certificate of --key (the registry trusts it)")
    parser.add_argument("--service", required=True)
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--expires-in", type=int, default=300)
    parser.add_argument("--omit-expires-in", action="store_true")
    parser.add_argument("--tls-cert", help="PEM server certificate (HTTPS)")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    parser.add_argument("--log", help="append one line per request here")
    args = parser.parse_args()
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")

    try:
        credentials = testserver.read_credentials(args.auth_file)
        signer = load_signer(args.key, args.cert)
    except (OSError, ValueError) as e:
        print("registry_token_server: %s" % e, file=sys.stderr)
        return 2

    tls = testserver.tls_context("registry_token_server", args.tls_cert,
                                 args.tls_key)
    return testserver.serve(
        "registry_token_server", args.port,
        lambda: TokenServer(args.port, tls, credentials, signer, args,
                            args.log))


if __name__ == "__main__":
    sys.exit(main())
