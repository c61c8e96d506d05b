"""KubeRay manifests checked against the CRDs' own schemas, before any cluster sees them.

The API server *prunes* fields a structural schema does not know — a typo like ``workerGroupSpec``
would vanish without an error. So the check here is strict: unknown fields are errors (as
``kubectl apply --validate=strict`` would say), except where the schema says it keeps them.
The string fields that hold YAML (``serveConfigV2``, ``runtimeEnvYAML``) are parsed and checked too.
"""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path
from typing import Any, Iterable, Optional

import yaml

GROUP, VERSION = "ray.io", "v1"
API_VERSION = f"{GROUP}/{VERSION}"
PLURALS = {"RayCluster": "rayclusters", "RayService": "rayservices", "RayJob": "rayjobs"}

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are ~1 MB each


def default_crd_dir() -> Path:
    """``ORION_KUBERAY_CRDS``, else ``shared/kuberay-crds`` beside the repository."""
    env = os.environ.get("ORION_KUBERAY_CRDS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "kuberay-crds"


def strict(schema: Any) -> Any:
    """A copy of an OpenAPI v3 schema in which objects refuse unknown fields."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.lru_cache(maxsize=8)
def _crd_schema(path: str, version: str) -> dict:
    crd = yaml.load(Path(path).read_text(), Loader=_Loader)
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            return strict(v["schema"]["openAPIV3Schema"])
    raise KeyError(f"{path}: no version {version}")


def crd_schema(kind: str, crd_dir: Optional[Path] = None) -> dict:
    """The strict ``ray.io/v1`` schema of ``kind`` (cached)."""
    path = (crd_dir or default_crd_dir()) / f"{PLURALS[kind]}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"KubeRay CRD not found: {path} (set ORION_KUBERAY_CRDS)")
    return copy.deepcopy(_crd_schema(str(path), VERSION))


def _path(parts: Iterable[Any]) -> str:
    return ".".join(str(p) for p in parts) or "<root>"


def _serve_config_problems(text: str) -> list[dict]:
    """``serveConfigV2`` must be a Serve config Ray accepts, with importable applications."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return [{"field": "spec.serveConfigV2", "problem": f"not YAML: {exc}"}]
    from ray.serve.schema import ServeDeploySchema

    try:
        schema = (
            ServeDeploySchema.model_validate(data)
            if hasattr(ServeDeploySchema, "model_validate")
            else ServeDeploySchema.parse_obj(data)
        )
    except Exception as exc:  # pydantic v1 or v2 error, whichever Ray uses
        return [{"field": "spec.serveConfigV2", "problem": str(exc)[:500]}]
    problems = []
    for i, app in enumerate(schema.applications):
        module, _, attr = app.import_path.replace(":", ".").rpartition(".")
        try:
            import importlib

            if not hasattr(importlib.import_module(module), attr):
                raise ImportError(f"{module} has no {attr}")
        except ImportError as exc:
            if app.import_path.startswith("orion_ray."):  # Orion's own must exist here too
                problems.append(
                    {"field": f"spec.serveConfigV2.applications.{i}.import_path", "problem": str(exc)}
                )
    return problems


def validate_manifest(manifest: Any, crd_dir: Optional[Path] = None) -> list[dict]:
    """Every problem of one KubeRay manifest as ``{"field", "problem"}`` (empty: valid)."""
    import jsonschema

    if not isinstance(manifest, dict):
        return [{"field": "<root>", "problem": "a manifest is a mapping"}]
    kind = manifest.get("kind")
    if kind not in PLURALS:
        return [{"field": "kind", "problem": f"expected one of {sorted(PLURALS)}, got {kind!r}"}]
    problems = []
    if manifest.get("apiVersion") != API_VERSION:
        problems.append({"field": "apiVersion", "problem": f"expected {API_VERSION}"})
    name = (manifest.get("metadata") or {}).get("name")
    import re

    if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name):
        problems.append({"field": "metadata.name", "problem": "a DNS-1123 label is required"})
    validator = jsonschema.Draft7Validator(crd_schema(kind, crd_dir))
    for err in sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path)):
        problems.append({"field": _path(err.absolute_path), "problem": err.message[:500]})
    spec = manifest.get("spec") or {}
    if kind == "RayService" and isinstance(spec.get("serveConfigV2"), str):
        problems.extend(_serve_config_problems(spec["serveConfigV2"]))
    if kind == "RayJob" and isinstance(spec.get("runtimeEnvYAML"), str):
        try:
            env = yaml.safe_load(spec["runtimeEnvYAML"])
            if not isinstance(env, dict):
                raise ValueError("not a mapping")
        except (yaml.YAMLError, ValueError) as exc:
            problems.append({"field": "spec.runtimeEnvYAML", "problem": str(exc)})
    return problems


def load_manifests(path: Path) -> list[dict]:
    """The KubeRay objects of a YAML file (other Kubernetes kinds in it are skipped)."""
    docs = list(yaml.safe_load_all(Path(path).read_text()))
    return [d for d in docs if isinstance(d, dict) and d.get("kind") in PLURALS]
