"""JWT auth modes against a JWKS served over HTTP by a local test server with keys made here."""

from __future__ import annotations

import base64
import hashlib
import hmac as hmac_mod
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask.testing import FlaskClient

from .helpers import QUERY_KEY, backend_free, batch, event, headers

ISSUER = "https://issuer.test"
AUDIENCE = "heat-collector"


class Jwks:
    """An RSA key set served at ``url``; counts fetches."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {}
        self.fetches = 0
        self.add("k1")
        jwks = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                jwks.fetches += 1
                public = [
                    {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(k.public_key())), "kid": kid, "use": "sig"}
                    for kid, k in jwks.keys.items()
                ]
                body = json.dumps({"keys": public}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, kid: str) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def token(self, kid: str = "k1", **claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-sub-1", "iat": now, "exp": now + 300, **claims}
        return jwt.encode(payload, self.keys[kid], algorithm="RS256", headers={"kid": kid})


@pytest.fixture
def jwks() -> Iterator[Jwks]:
    server = Jwks()
    yield server
    server.server.shutdown()


def jwt_client(make_app: Any, jwks: Jwks, mode: str, **options: Any) -> FlaskClient:
    app = make_app(auth_mode=mode, jwks_url=jwks.url, jwt_issuer=ISSUER, jwt_audience=AUDIENCE, **options)
    client: FlaskClient = app.test_client()
    return client


def post(client: FlaskClient, token: str | None, key: str | None = "dev-project-key") -> Any:
    extra = {"Authorization": f"Bearer {token}"} if token else {}
    hdrs = headers(key, **extra) if key else extra
    return client.post("/ingest", json=batch(event("click"), user={"id": "payload-user"}), headers=hdrs)


@backend_free
def test_jwt_mode_requires_and_verifies_token(make_app: Any, jwks: Jwks) -> None:
    client = jwt_client(make_app, jwks, "jwt")
    missing = post(client, None)
    assert missing.status_code == 401 and missing.get_json()["code"] == "missing_jwt"
    assert post(client, jwks.token(), key=None).get_json()["code"] == "missing_project_key"
    ok = post(client, jwks.token())
    assert ok.status_code == 200, ok.get_json()
    # The JWT subject, not the payload's user id, names the user.
    session = client.get("/api/sessions/s-1", headers={"x-api-key": QUERY_KEY}).get_json()["session"]
    other = post(client, jwks.token(sub="someone-else"))
    assert other.status_code == 200
    again = client.get("/api/sessions/s-1", headers={"x-api-key": QUERY_KEY}).get_json()["session"]
    assert session["userId"] != again["userId"]


@backend_free
@pytest.mark.parametrize(
    "claims",
    [
        {"exp": int(time.time()) - 60},
        {"nbf": int(time.time()) + 3600},
        {"iss": "https://evil.test"},
        {"aud": "someone-else"},
    ],
)
def test_bad_claims_are_refused(make_app: Any, jwks: Jwks, claims: dict[str, Any]) -> None:
    client = jwt_client(make_app, jwks, "jwt")
    response = post(client, jwks.token(**claims))
    assert response.status_code == 401 and response.get_json()["code"] == "invalid_jwt"


@backend_free
def test_forged_tokens_are_refused(make_app: Any, jwks: Jwks) -> None:
    client = jwt_client(make_app, jwks, "jwt")
    unsigned = jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "sub": "x"}, key=None, algorithm="none", headers={"kid": "k1"}
    )
    assert post(client, unsigned).get_json()["code"] == "invalid_jwt"
    public_pem = (
        jwks.keys["k1"]
        .public_key()
        .public_bytes(encoding=serialization.Encoding.PEM, format=serialization.PublicFormat.SubjectPublicKeyInfo)
    )

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "kid": "k1", "typ": "JWT"}).encode())
    body = b64(json.dumps({"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": int(time.time()) + 60}).encode())
    sig = b64(hmac_mod.new(public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest())
    assert post(client, f"{head}.{body}.{sig}").get_json()["code"] == "invalid_jwt"
    assert post(client, "not.a.jwt").get_json()["code"] == "invalid_jwt"


@backend_free
def test_unknown_kid_refetches_once(make_app: Any, jwks: Jwks) -> None:
    client = jwt_client(make_app, jwks, "jwt", jwks_refetch_cooldown_seconds=0)
    assert post(client, jwks.token()).status_code == 200
    assert jwks.fetches == 1
    jwks.add("k2")  # key rotation: the new kid is found by one refetch
    assert post(client, jwks.token(kid="k2")).status_code == 200
    assert jwks.fetches == 2
    stranger = Jwks()
    stranger.keys = {"k9": stranger.keys["k1"]}
    refused = post(client, stranger.token(kid="k9"))
    assert refused.status_code == 401 and refused.get_json()["code"] == "invalid_jwt"
    assert jwks.fetches == 3
    stranger.server.shutdown()


@backend_free
def test_unknown_kids_refetch_once_per_cooldown(make_app: Any, jwks: Jwks) -> None:
    """Forged kids cannot make the collector hammer the JWKS server."""
    client = jwt_client(make_app, jwks, "jwt", jwks_refetch_cooldown_seconds=3600)
    assert post(client, jwks.token()).status_code == 200
    jwks.add("k2")  # within the cool-down even a real new key waits: one fetch at most
    jwks.add("k3")
    for kid in ("k2", "k3", "k2"):
        refused = post(client, jwks.token(kid=kid))
        assert refused.status_code == 401 and refused.get_json()["code"] == "invalid_jwt"
    assert jwks.fetches == 1


@backend_free
def test_both_mode_token_optional_but_verified(make_app: Any, jwks: Jwks) -> None:
    client = jwt_client(make_app, jwks, "both")
    assert post(client, None).status_code == 200
    assert post(client, jwks.token()).status_code == 200
    assert post(client, jwks.token(aud="nope")).get_json()["code"] == "invalid_jwt"
    assert post(client, None, key=None).get_json()["code"] == "missing_project_key"


@backend_free
def test_jwks_down_is_503_quickly(make_app: Any, jwks: Jwks) -> None:
    client = jwt_client(make_app, jwks, "jwt")
    token = jwks.token()
    jwks.server.shutdown()
    jwks.server.server_close()
    started = time.monotonic()
    response = post(client, token)
    assert response.status_code == 503 and response.get_json()["code"] == "jwks_unavailable"
    assert response.headers["Retry-After"]
    assert time.monotonic() - started < 10


def test_slow_jwks_is_503_within_the_fetch_timeout(tmp_path: Any) -> None:
    """A JWKS endpoint that never answers costs one bounded wait, never a hung worker."""
    import socket

    from flask import Flask

    from flask_heat_collector import HeatCollector
    from flask_heat_collector.auth import JWKS_TIMEOUT_SECONDS

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts connections, never answers
    port = listener.getsockname()[1]
    try:
        app = Flask("slow-jwks", instance_path=str(tmp_path))
        HeatCollector(
            app,
            database_uri=f"sqlite:///{tmp_path / 'h.db'}",
            auth_mode="jwt",
            jwks_url=f"http://127.0.0.1:{port}/jwks",
            jwt_issuer=ISSUER,
            jwt_audience=AUDIENCE,
        )
        signer = Jwks()
        started = time.monotonic()
        response = post(app.test_client(), signer.token())
        elapsed = time.monotonic() - started
        signer.server.shutdown()
    finally:
        listener.close()
    assert response.status_code == 503 and response.get_json()["code"] == "jwks_unavailable"
    assert elapsed < JWKS_TIMEOUT_SECONDS * 3
