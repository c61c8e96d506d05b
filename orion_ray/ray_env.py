"""The environment of the Ray processes Orion starts: built from an allowlist, never inherited.

Every Ray process (GCS, raylet, dashboard, job drivers, and the workers that run tenants' code)
inherits the environment of ``ray start``. ``orion up`` runs with the operator's environment:
tenant keys (the variables ``api_key_env`` names), ``ORION_API_KEY``, cloud credentials. Handed
on whole, any task could read them with ``os.environ``. So ``ray start`` gets only what Ray and
Python need to run, plus the settings Orion decides; the keys are read and hashed by ``orion up``
in its own process and never leave it.

Pure: no Ray import, so the rule is tested without a cluster.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Optional

# What a process needs to run Ray and Python and find its tools, its locale and its GPUs.
ALLOWED_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TERM",
        "TMPDIR",
        "VIRTUAL_ENV",
        "ORION_HOME",
        "LD_LIBRARY_PATH",
        "CUDA_HOME",
        "CUDA_VISIBLE_DEVICES",
        "NVIDIA_VISIBLE_DEVICES",
        "HF_HOME",
        "XDG_CACHE_HOME",
        "OMP_NUM_THREADS",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
    }
)
# Locale categories, and Ray's own settings (``RAY_enable_autoscaler_v2``, ``RAY_gcs_storage``…):
# an operator tunes the head through them, and none is a credential except the ones refused below.
ALLOWED_PREFIXES = ("LC_", "RAY_")
# A name that looks like a credential is never passed, allowed or not: Ray's own token and Redis
# password included (a local head runs without token auth; see ``cluster.py``).
SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSW|CREDENTIAL)", re.IGNORECASE)
# Never passed, whatever the name looks like.
ALWAYS_REFUSED = frozenset({"ORION_API_KEY", "ORION_URL", "AWS_PROFILE", "PYTHONPATH", "PYTHONSTARTUP"})


def looks_secret(name: str) -> bool:
    """Whether ``name`` is refused whatever the allowlist says (a credential's name, or one of
    Orion's own client settings)."""
    return name in ALWAYS_REFUSED or bool(SECRET_NAME.search(name))


def ray_process_env(
    environ: Mapping[str, str],
    *,
    settings: Optional[Mapping[str, str]] = None,
    extra_names: Iterable[str] = (),
    refused: Iterable[str] = (),
) -> dict[str, str]:
    """The environment for ``ray start`` (and anything else Orion launches into Ray).

    ``environ`` is the caller's environment; only allowed names are copied from it: the fixed
    allowlist, ``extra_names`` (an operator's ``orion.ray_pass_env``), never a name in
    ``refused`` (the tenants' key variables) nor one that looks like a credential. ``settings``
    are the values Orion decides (``RAY_AUTH_MODE``…); they win over the caller's.
    """
    allowed = ALLOWED_NAMES | set(extra_names)
    deny = set(refused)
    out: dict[str, str] = {}
    for name, value in environ.items():
        if name in deny or looks_secret(name):
            continue
        if name in allowed or name.startswith(ALLOWED_PREFIXES):
            out[name] = value
    out.update(settings or {})
    return out
