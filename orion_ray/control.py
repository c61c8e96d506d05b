"""The control plane's credential: a secret that every privileged method of Orion's actors
(``orion-scheduler``, ``orion-executor``, ``orion-serving``) requires as an argument.

Why: Ray has no caller identity. Any process on the cluster, a tenant's task included, can do
``ray.get_actor("orion-scheduler", namespace="orion")`` and call ``configure_tenants``, ``cancel``
or ``list`` for every tenant. The token is what tells Orion's own processes (the API replica, the
autoscaler, the serving manager, ``orion up``) from workload code.

How it travels: ``orion up`` creates it once (``~/.orion/control_token``, mode 0600, beside the
admin credentials) and hands it to each actor as a constructor argument, and to the API replica
as an argument of its application — never through an environment variable, so no worker's
environment holds it. A restarted actor gets it again from Ray (constructor arguments are kept).
The executor, started by a Ray job of its own, reads it from the file (its job's entrypoint and
environment are visible to anyone who lists jobs).

An actor created without a token (``None``: a test, an embedding that deploys the scheduler by
hand) does not check: the guard is Orion's deployment's, and ``orion up`` always sets it.

This module is the model layer's: it imports neither Ray nor FastAPI.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path
from typing import Any, Callable, Optional

from .errors import Forbidden

CONTROL_PARAM = "control_token"  # the keyword every guarded actor method takes
TOKEN_FILE = "control_token"


def token_path(home: Optional[Path] = None) -> Path:
    """Where ``orion up`` keeps the token (``$ORION_HOME`` or ``~/.orion``)."""
    if home is None:
        from .config import orion_home

        home = orion_home()
    return Path(home) / TOKEN_FILE


def read_token(home: Optional[Path] = None) -> Optional[str]:
    """The token ``orion up`` created, or ``None`` if there is none here."""
    try:
        text = token_path(home).read_text().strip()
    except OSError:
        return None
    return text or None


def load_or_create_token(home: Optional[Path] = None) -> str:
    """The existing token (a re-run of ``orion up`` must match the running actors), else a new one
    written with mode 0600 (created so, never widened after the fact)."""
    found = read_token(home)
    if found:
        return found
    path = token_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    return token


def check(expected: Optional[str], given: Optional[str], method: str) -> None:
    """Refuse a call to ``method`` without the control plane's credential (``Forbidden``); an
    actor created without a token (``expected`` None) does not check."""
    if expected is None:
        return
    if not isinstance(given, str) or not hmac.compare_digest(expected.encode(), given.encode()):
        raise Forbidden(f"{method} needs the control plane's credential")


def credential(token: Optional[str]) -> dict[str, str]:
    """The keyword a call to a guarded actor method carries: ``{"control_token": token}``, or
    nothing when there is no token (an unguarded actor, or a test's stand-in for one)."""
    return {CONTROL_PARAM: token} if token is not None else {}


def guarded_ray_call(token_attr: str = "_control_token") -> Callable[..., Any]:
    """A replacement for Ray's ``__ray_call__`` (which runs any closure on the actor, its state and
    its token included) that needs the credential too. Install it with
    ``ray_runtime.close_ray_call`` on the wrapped class before the first ``.remote()``."""

    def __ray_call__(
        self: Any, fn: Callable[..., Any], *args: Any, control_token: Optional[str] = None, **kwargs: Any
    ) -> Any:
        check(getattr(self, token_attr, None), control_token, "__ray_call__")
        return fn(self, *args, **kwargs)

    return __ray_call__
