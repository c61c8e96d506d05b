"""The SDK's error mapping and credential resolution (no server involved)."""

import json
import os
import stat

import httpx
import pytest

from orion_ray import credentials
from orion_ray.client import OrionClient, _error_from
from orion_ray.errors import (
    Conflict,
    Forbidden,
    MalformedRequest,
    NotFound,
    OrionError,
    PayloadTooLarge,
    QueueFull,
    SchedulerUnavailable,
    Unauthorized,
    ValidationError,
)


def response(status, body):
    if isinstance(body, (dict, list)):
        return httpx.Response(status, json=body)
    return httpx.Response(status, text=body)


def error_body(code, message="boom", details=None):
    return {"error": {"code": code, "message": message, "details": details or []}}


@pytest.mark.parametrize(
    "status, code, cls",
    [
        (422, "validation_error", ValidationError),
        (400, "malformed_json", MalformedRequest),
        (401, "unauthorized", Unauthorized),
        (403, "forbidden", Forbidden),
        (404, "not_found", NotFound),
        (409, "conflict", Conflict),
        (413, "payload_too_large", PayloadTooLarge),
        (429, "queue_full", QueueFull),
        (503, "scheduler_unavailable", SchedulerUnavailable),
        (500, "internal_error", OrionError),
    ],
)
def test_error_codes_map_to_typed_exceptions(status, code, cls):
    details = [{"field": "resources.gpu", "problem": "too many"}]
    exc = _error_from(response(status, error_body(code, "the message", details)))
    assert type(exc) is cls
    assert exc.message == "the message" and exc.details == details
    assert exc.http_status == status


def test_malformed_is_still_a_validation_error():
    assert isinstance(_error_from(response(400, error_body("malformed_json"))), ValidationError)


@pytest.mark.parametrize(
    "status, cls",
    [
        (404, NotFound),
        (422, ValidationError),
        (400, MalformedRequest),
        (405, OrionError),
        (503, SchedulerUnavailable),
    ],
)
def test_unknown_code_falls_back_to_the_http_status(status, cls):
    exc = _error_from(response(status, error_body("something_new")))
    assert type(exc) is cls


@pytest.mark.parametrize("body", ["<html>Bad gateway</html>", {"detail": "x"}, ["a"], ""])
def test_non_contract_body_still_raises_an_orion_error(body):
    exc = _error_from(response(502, body))
    assert type(exc) is OrionError
    assert exc.http_status == 502 and exc.message
    if body == "<html>Bad gateway</html>":
        assert exc.message == body


# -- credentials ---------------------------------------------------------------------------------
@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("ORION_HOME", str(tmp_path / "orion-home"))
    monkeypatch.delenv("ORION_URL", raising=False)
    monkeypatch.delenv("ORION_API_KEY", raising=False)
    return tmp_path / "orion-home"


def test_no_credentials_gives_local_default(home):
    assert credentials.read_credentials() == {}
    assert credentials.resolve() == ("http://127.0.0.1:8000", None)


def test_written_file_is_private_json(home):
    path = credentials.write_credentials("http://file:1", "file-key")
    assert path == home / "credentials"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert json.loads(path.read_text()) == {"url": "http://file:1", "api_key": "file-key"}


def test_overwriting_keeps_mode_0600(home):
    home.mkdir()
    (home / "credentials").write_text("{}")
    os.chmod(home / "credentials", 0o644)
    path = credentials.write_credentials("http://file:1", "k")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_precedence_explicit_then_env_then_file(home, monkeypatch):
    credentials.write_credentials("http://file:1/", "file-key")
    assert credentials.resolve() == ("http://file:1", "file-key")
    monkeypatch.setenv("ORION_URL", "http://env:2")
    assert credentials.resolve() == ("http://env:2", "file-key")
    monkeypatch.setenv("ORION_API_KEY", "env-key")
    assert credentials.resolve() == ("http://env:2", "env-key")
    assert credentials.resolve("http://explicit:3", "explicit-key") == ("http://explicit:3", "explicit-key")
    assert credentials.resolve(api_key="explicit-key") == ("http://env:2", "explicit-key")


def test_corrupt_file_is_ignored(home):
    home.mkdir()
    (home / "credentials").write_text("not json")
    assert credentials.resolve() == ("http://127.0.0.1:8000", None)


def test_client_uses_resolved_credentials(home):
    credentials.write_credentials("http://file:1", "file-key")
    with OrionClient() as c:
        assert c.url == "http://file:1"
        assert c._http.headers["Authorization"] == "Bearer file-key"
