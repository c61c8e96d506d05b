"""What tenant-named code and environments may not be: the task-function denylist and the
``runtime_env`` allowlist, checked at the door (a 422 naming the field) and again in the worker.

Standard library only: ``runtime/task_runner.py`` imports it inside every task worker, and the API
replica and the scheduler both call it before a submission is written.

Why a denylist of modules: a task names ``module:callable`` and Orion imports and calls it with
JSON arguments. Without a check that turns Orion into a remote shell and a key reader
(``os:getenv``, ``subprocess:run``, ``builtins:eval``, ``orion_ray.credentials:read_credentials``,
``httpx:post`` to the Ray dashboard's Jobs API). The modules below are the ones whose callables
reach the process, the filesystem, the network, Ray or Orion's own authority by name alone. It is
not a sandbox: a tenant's own module runs whatever it contains (``docs/tenancy.md`` → trust model).
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Optional

# Top-level modules (and every submodule) a task function may not come from, unless the operator
# allows the module for the tenant (``tenants[].allowed_function_modules``).
DENIED_MODULES: frozenset[str] = frozenset(
    {
        # Orion itself: keys, actors, the store
        "orion_ray",
        "serve_apps",
        # the interpreter: eval/exec/open/__import__, the process, imports, unpickling
        "builtins",
        "sys",
        "os",
        "posix",
        "nt",
        "posixpath",
        "ntpath",
        "importlib",
        "pkgutil",
        "runpy",
        "code",
        "codeop",
        "pickle",
        "cloudpickle",
        "marshal",
        "shelve",
        "copyreg",
        "ctypes",
        "cffi",
        "gc",
        "inspect",
        "types",
        "pdb",
        "pydoc",
        "site",
        "sysconfig",
        # processes and signals
        "subprocess",
        "multiprocessing",
        "concurrent",
        "threading",
        "signal",
        "pty",
        "asyncio",
        "resource",
        # files
        "io",
        "codecs",
        "shutil",
        "tempfile",
        "pathlib",
        "glob",
        "fileinput",
        "linecache",
        "zipfile",
        "tarfile",
        "zipimport",
        "mmap",
        "fcntl",
        # the network (the Ray dashboard's Jobs API and the GCS listen on the machine)
        "socket",
        "ssl",
        "select",
        "selectors",
        "http",
        "urllib",
        "urllib3",
        "requests",
        "httpx",
        "aiohttp",
        "grpc",
        "ftplib",
        "smtplib",
        "webbrowser",
        # Ray and the clouds Orion holds credentials for
        "ray",
        "boto3",
        "botocore",
        "kubernetes",
    }
)

# runtime_env keys a tenant may set (everything else is refused: container/image_uri run another
# image, worker_process_setup_hook names code to run in every worker, conda names environments
# of the node, private keys steer Ray itself).
ALLOWED_RUNTIME_ENV_KEYS: frozenset[str] = frozenset(
    {"pip", "uv", "env_vars", "working_dir", "py_modules", "excludes", "config"}
)
# working_dir and py_modules must be remote archives: a local path is read (and uploaded) from the
# filesystem of whichever Orion process launches the work — the scheduler's, on the head.
REMOTE_URI = re.compile(r"^(s3|gs|https|http|az|abfss|hdfs)://[^\s]+$", re.IGNORECASE)
# Variables that load code, steer Python, Ray or Orion, carry cloud credentials or reassign GPUs.
DENIED_ENV_VARS = re.compile(
    r"^(LD_.*|DYLD_.*|PYTHON.*|RAY_.*|ORION_.*|AWS_.*|AZURE_.*|GOOGLE_.*|GCLOUD_.*|KUBE.*|"
    r"PATH|HOME|SHELL|BASH_ENV|ENV|GCONV_PATH|MALLOC_.*|NODE_OPTIONS|PERL5.*|"
    r"(CUDA|NVIDIA|HIP|ROCR)_VISIBLE_DEVICES|OMPI_.*|PMIX_.*)$",
    re.IGNORECASE,
)
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
MAX_ENV_VALUE = 8192


def _covered(module: str, names: Iterable[str]) -> bool:
    """``module`` is one of ``names`` or a submodule of one."""
    return any(module == n or module.startswith(n + ".") for n in names)


def module_denied(module: str, allowed: Iterable[str] = ()) -> bool:
    """Whether a task function from ``module`` is refused (``allowed``: the tenant's exceptions,
    each a module and its submodules)."""
    allowed = tuple(allowed)
    if _covered(module, allowed):
        return False
    top = module.split(".", 1)[0]
    return top in DENIED_MODULES or top.startswith("_")


def origin_denied(origin: str, allowed: Iterable[str] = ()) -> bool:
    """Whether a callable whose ``__module__`` is ``origin`` is refused in the worker. The C
    halves of the standard library carry a leading underscore (``operator.add`` is
    ``_operator``'s, ``io.open`` is ``_io``'s): the name without it is what is checked, so
    harmless ones pass and ``_io``, ``_posixsubprocess`` or ``_socket`` do not."""
    allowed = tuple(allowed)
    if _covered(origin, allowed):
        return False
    top = origin.split(".", 1)[0]
    return top in DENIED_MODULES or top.lstrip("_") in DENIED_MODULES or top in _PRIVATE_DENIED


# C modules behind denied ones whose public name differs
_PRIVATE_DENIED = frozenset(
    {"_posixsubprocess", "_thread", "_imp", "_frozen_importlib", "_winapi", "_ctypes"}
)


def function_problem(function: str, allowed: Iterable[str] = ()) -> Optional[str]:
    """Why ``function`` (``module:attr.path``) may not be a task function, or ``None``.

    The attribute path is checked too: ``json:codecs.open`` reaches ``codecs`` through a module
    the denylist allows, and a private or dunder name reaches anything (``x:__builtins__``)."""
    allowed = tuple(allowed)
    module, _, attr_path = function.partition(":")
    if module_denied(module, allowed):
        return (
            f"functions from module {module.split('.', 1)[0]!r} are not allowed for tenants "
            "(an operator may allow a module per tenant: allowed_function_modules)"
        )
    for part in attr_path.split("."):
        if part.startswith("_"):
            return f"{part!r}: private and dunder attributes are not task functions"
        if part in DENIED_MODULES and not _covered(part, allowed):
            return f"{part!r} names a module that is not allowed for tenants"
    return None


def runtime_env_problems(runtime_env: Optional[dict[str, Any]]) -> list[dict[str, str]]:
    """Every reason ``runtime_env`` is refused, as the contract's details (field, problem)."""
    if not runtime_env:
        return []
    out: list[dict[str, str]] = []
    for key in sorted(runtime_env):
        if key not in ALLOWED_RUNTIME_ENV_KEYS:
            out.append(
                {
                    "field": f"runtime_env.{key}",
                    "problem": f"not allowed; allowed keys: {', '.join(sorted(ALLOWED_RUNTIME_ENV_KEYS))}",
                }
            )
    wd = runtime_env.get("working_dir")
    if wd is not None and not (isinstance(wd, str) and REMOTE_URI.match(wd)):
        out.append(
            {
                "field": "runtime_env.working_dir",
                "problem": "must be a remote archive URI (s3://, gs://, https://…), not a local path",
            }
        )
    mods = runtime_env.get("py_modules")
    if mods is not None:
        if not isinstance(mods, list) or not all(isinstance(m, str) and REMOTE_URI.match(m) for m in mods):
            out.append(
                {
                    "field": "runtime_env.py_modules",
                    "problem": "must be a list of remote archive URIs (s3://, gs://, https://…)",
                }
            )
    env_vars = runtime_env.get("env_vars")
    if env_vars is not None:
        if not isinstance(env_vars, dict):
            out.append({"field": "runtime_env.env_vars", "problem": "must be an object of strings"})
        else:
            for name, value in env_vars.items():
                field = f"runtime_env.env_vars.{str(name)[:64]}"
                if not ENV_NAME.match(str(name)):
                    out.append({"field": field, "problem": "not a valid variable name"})
                elif DENIED_ENV_VARS.match(name):
                    out.append(
                        {
                            "field": field,
                            "problem": "variables that load code or steer Python, Ray, Orion, the GPUs "
                            "or cloud credentials are not allowed",
                        }
                    )
                elif not isinstance(value, str) or len(value) > MAX_ENV_VALUE:
                    problem = f"must be a string of at most {MAX_ENV_VALUE} characters"
                    out.append({"field": field, "problem": problem})
    return out
