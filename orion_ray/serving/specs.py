"""The serving spec types, re-exported: they are model types and live in ``orion_ray.serving_specs``
(the traffic policy needs them, and policy may import only the model layer)."""

from ..serving_specs import (
    ENGINES,
    NAME_RE,
    ABTest,
    Autoscaling,
    DeploymentSpec,
    Duration,
    ReleaseSpec,
    ScaleRequest,
    Shadow,
    Step,
    SuccessCriteria,
    deployment_id,
    parse_duration,
)

__all__ = [
    "ENGINES",
    "NAME_RE",
    "ABTest",
    "Autoscaling",
    "DeploymentSpec",
    "Duration",
    "ReleaseSpec",
    "ScaleRequest",
    "Shadow",
    "Step",
    "SuccessCriteria",
    "deployment_id",
    "parse_duration",
]
