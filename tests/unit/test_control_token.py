"""The control plane's credential (``orion_ray.control``): created once with mode 0600 and reused,
compared in constant time, carried as a keyword only when there is one; and the executor's
privileged methods refusing a caller without it (no Ray cluster needed: nothing is started)."""

from __future__ import annotations

import asyncio
import stat

import pytest

from orion_ray.control import CONTROL_PARAM, check, credential, load_or_create_token, read_token
from orion_ray.errors import Forbidden


def test_the_token_is_created_0600_once_and_reused(tmp_path):
    assert read_token(tmp_path) is None
    token = load_or_create_token(tmp_path)
    assert len(token) >= 40 and read_token(tmp_path) == token
    assert stat.S_IMODE((tmp_path / "control_token").stat().st_mode) == 0o600
    assert load_or_create_token(tmp_path) == token  # a second `orion up` matches the running actors


def test_check_refuses_a_missing_or_wrong_token_and_an_unguarded_actor_does_not_check():
    check("t0k", "t0k", "list")
    for given in (None, "", "t0", "t0kk", 123):
        with pytest.raises(Forbidden, match="list needs the control plane's credential"):
            check("t0k", given, "list")  # type: ignore[arg-type]
    check(None, None, "list")
    assert credential("x") == {CONTROL_PARAM: "x"} and credential(None) == {}


def test_the_executor_refuses_every_privileged_method_without_the_credential():
    from orion_ray.runtime.executor import TaskExecutor

    ex = TaskExecutor("orion", control_token="secret")
    assert ex.has("w", 1) is False and ex.ping() == "ok"  # liveness probes stay open
    with pytest.raises(Forbidden):
        ex.runs()
    with pytest.raises(Forbidden):
        ex.cancel("w", 1, control_token="guess")
    with pytest.raises(Forbidden):
        ex.forget("w", 1)
    with pytest.raises(Forbidden):
        asyncio.run(ex.wait("w", 1))
    with pytest.raises(Forbidden):
        asyncio.run(ex.stop("w", 1, 0.0))
    with pytest.raises(Forbidden):
        ex.start(
            "w",
            1,
            function="math:sqrt",
            args=[4],
            kwargs={},
            pg_name="",
            bundle={},
            runtime_env=None,
            max_result_bytes=10,
            max_log_bytes=10,
        )
    assert ex.runs(control_token="secret") == []
    assert asyncio.run(ex.wait("w", 1, control_token="secret")) == {"lost": True}
