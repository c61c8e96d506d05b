"""``autoscaling.initial_replicas`` (added for the AIWorkload's ``replicas`` beside autoscaling):
where a deployment starts, between its bounds."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from orion_ray.serving.deployer import serve_options
from orion_ray.serving.manager import _replicas
from orion_ray.serving_specs import DeploymentSpec


def _spec(**auto) -> DeploymentSpec:
    return DeploymentSpec.model_validate({"model_id": "m", "autoscaling": {"max_replicas": 20, **auto}})


def test_initial_replicas_reach_serve_and_the_room_the_manager_asks_for():
    spec = _spec(min_replicas=2, initial_replicas=3)
    assert serve_options(spec)["autoscaling_config"]["initial_replicas"] == 3
    assert _replicas(spec) == 3


def test_without_it_a_deployment_starts_at_its_minimum_at_least_one():
    assert serve_options(_spec(min_replicas=2))["autoscaling_config"]["initial_replicas"] == 2
    assert serve_options(_spec(min_replicas=0))["autoscaling_config"]["initial_replicas"] == 1


@pytest.mark.parametrize("initial", [1, 21])
def test_initial_replicas_outside_the_bounds_are_refused(initial):
    with pytest.raises(ValidationError):
        _spec(min_replicas=2, initial_replicas=initial)
