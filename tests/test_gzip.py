"""``Content-Encoding: gzip`` on POST /ingest (SPEC 9): stored as the plain batch, capped once inflated.

The refusals (bomb, ratio, truncated, corrupt, trailing garbage, other encodings) are cases of the
hostile-input corpus in ``tests/security/test_hostile_input.py``.
"""

from __future__ import annotations

import gzip
import json
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from .helpers import API, batch, dump_database, event, gzip_bomb, headers, sdk_fixture

ONCE = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # never reaches storage


def gz(raw: bytes) -> bytes:
    return gzip.compress(raw, mtime=0)


_PER_PROJECT = ("id", "projectId", "userId", "requestId")  # ids that differ between two projects


def without_ids(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_ids(v) for k, v in value.items() if k not in _PER_PROJECT}
    if isinstance(value, list):
        return [without_ids(v) for v in value]
    return value


def stored(client: FlaskClient, project_id: str, session_id: str) -> Any:
    """What the query API shows of a project's events and session, without per-project ids."""
    events = client.get(f"/api/projects/{project_id}/events", query_string={"limit": 1000}, headers=API)
    session = client.get(f"/api/projects/{project_id}/sessions/{session_id}", headers=API)
    assert events.status_code == 200 and session.status_code == 200
    return without_ids([events.get_json()["events"], session.get_json()])


def test_a_gzip_batch_is_stored_like_the_same_plain_batch(client: FlaskClient, backend: str) -> None:
    fixture = sdk_fixture()
    raw = json.dumps(fixture["body"]).encode()
    session_id = fixture["body"]["session"]["id"]
    zipped = client.post("/ingest", data=gz(raw), headers={**fixture["headers"], "Content-Encoding": "gzip"})
    assert zipped.status_code == 200, zipped.get_json()
    answer = zipped.get_json()
    assert (answer["accepted"], answer["duplicates"], answer["dropped"]) == (11, 0, 0)
    assert zipped.headers["X-Ingested-Events"] == "11"

    # The same batch sent plain finds every row already stored, and changes nothing.
    before = dump_database(backend)
    plain = client.post("/ingest", data=raw, headers=fixture["headers"])
    assert (plain.get_json()["accepted"], plain.get_json()["duplicates"]) == (0, 11)
    assert dump_database(backend) == before

    # Sent plain to another project, it is stored as the gzip batch was.
    other = client.post("/ingest", data=raw, headers={**fixture["headers"], "X-Project-Key": "plain-key"})
    assert (other.get_json()["accepted"], other.get_json()["duplicates"]) == (11, 0)
    assert stored(client, other.get_json()["projectId"], session_id) == stored(client, answer["projectId"], session_id)


def test_multi_member_gzip_is_one_body(client: FlaskClient, backend: str) -> None:
    """RFC 1952 lets a gzip body be several members; their contents are joined (as ``gzip -d`` does)."""
    raw = json.dumps(batch(event("click"), event("scroll"))).encode()
    half = len(raw) // 2
    body = gz(raw[:half]) + gz(b"") + gz(raw[half:])
    response = client.post("/ingest", data=body, headers=headers(**{"Content-Encoding": "gzip"}))
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["accepted"] == 2


@ONCE
@pytest.mark.parametrize("name", ["x-gzip", "GZIP", " gzip "])
def test_gzip_spellings(client: FlaskClient, name: str) -> None:
    response = client.post(
        "/ingest", data=gz(json.dumps(batch()).encode()), headers=headers(**{"Content-Encoding": name})
    )
    assert response.status_code == 200, response.get_json()


@ONCE
def test_the_size_cap_applies_once_inflated(make_app: Callable[..., Flask]) -> None:
    raw = json.dumps(batch(*[event("click") for _ in range(30)])).encode()
    body = gz(raw)
    assert len(body) * 3 < len(raw)
    exact = make_app(max_body_bytes=len(raw)).test_client()
    assert exact.post("/ingest", data=body, headers=headers(**{"Content-Encoding": "gzip"})).status_code == 200
    short = make_app(max_body_bytes=len(raw) - 1).test_client()
    response = short.post("/ingest", data=body, headers=headers(**{"Content-Encoding": "gzip"}))
    assert response.status_code == 413
    assert response.get_json()["code"] == "payload_too_large"
    assert "once decompressed" in response.get_json()["message"]


@ONCE
def test_the_ratio_guard_is_100_to_1(client: FlaskClient) -> None:
    """Whitespace-padded JSON under the size cap: accepted up to 100:1, refused past it."""
    plain = json.dumps(batch()).encode()

    def padded_to(ratio: float) -> bytes:
        low, high = 0, 900_000
        while high - low > 1:  # the padding that gives the highest ratio not above ``ratio``
            mid = (low + high) // 2
            raw = plain[:-1] + b" " * mid + b"}"
            low, high = (mid, high) if len(raw) <= ratio * len(gz(raw)) else (low, mid)
        return plain[:-1] + b" " * low + b"}"

    under, over = padded_to(100), padded_to(130)
    assert len(under) <= 100 * len(gz(under)) and len(over) > 100 * len(gz(over))
    ok = client.post("/ingest", data=gz(under), headers=headers(**{"Content-Encoding": "gzip"}))
    assert ok.status_code == 200, ok.get_json()
    refused = client.post("/ingest", data=gz(over), headers=headers(**{"Content-Encoding": "gzip"}))
    assert refused.status_code == 413 and refused.get_json()["code"] == "payload_too_large"
    assert "100:1" in refused.get_json()["message"]


@ONCE
def test_a_gigabyte_gzip_bomb_is_refused_in_bounded_memory(make_app: Callable[..., Flask]) -> None:
    """1 GiB of zeros in about 1 MB of gzip: refused once 2 MB are inflated, never all of it."""
    client = make_app(max_body_bytes=2_000_000).test_client()
    bomb = gzip_bomb(1024)
    assert 1_000_000 < len(bomb) < 2_000_000
    tracemalloc.start()
    try:
        response = client.post("/ingest", data=bomb, headers=headers(**{"Content-Encoding": "gzip"}))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert response.status_code == 413
    assert response.get_json()["code"] == "payload_too_large"
    assert peak < 20_000_000, f"peak {peak / 1e6:.1f} MB"
