"""``orion.capacity: {provider: ec2}`` mounts the capacity routes on the API a running Orion
serves, over a boto3 client made on first use (here pointed at the moto server on loopback)."""

import pytest
from fastapi.testclient import TestClient

from orion_ray.api.app import build_app
from orion_ray.api.auth import KeyRing, hash_key
from orion_ray.autoscaler.capacity_service import LazyCapacity, capacity_backend
from orion_ray.config import load_config
from orion_ray.errors import ConfigError

from .conftest import AMI

ADMIN = {"Authorization": "Bearer admin-key"}


def test_no_capacity_provider_means_no_capacity_routes():
    assert capacity_backend({"provider": "none"}, []) is None


def test_ec2_capacity_mounts_status_over_the_configured_endpoint(moto_url, subnets):
    pools = [
        {
            "name": "gpu",
            "instance_type": "p4d.24xlarge",
            "image_id": AMI,
            "subnets": list(subnets.values()),
            "market": "spot",
            "fallback": "on_demand",
            "max_size": 4,
            "scaling_policy": "reactive",
            "ray_node_type": "gpu",
        }
    ]
    backend = capacity_backend(
        {"provider": "ec2", "region": "us-east-1", "endpoint_url": moto_url, "cluster": "test"}, pools
    )
    assert isinstance(backend, LazyCapacity) and backend._svc is None  # nothing made yet
    client = TestClient(build_app(KeyRing([hash_key("admin-key")]), backend=None, capacity_backend=backend))
    r = client.get("/admin/v1/capacity/status", headers=ADMIN)
    assert r.status_code == 200, r.text
    assert "gpu" in r.json()["pools"]
    assert "/admin/v1/capacity/reservations" in client.get("/openapi.json").json()["paths"]
    assert client.get("/admin/v1/capacity/status").status_code == 401
    client.close()


def test_ec2_capacity_validates_the_pools_at_load(tmp_path):
    f = tmp_path / "orion.yaml"
    f.write_text(
        "orion:\n  capacity: {provider: ec2, region: us-east-1}\n"
        "  worker_pools:\n    - {name: gpu, instance_type: p4d.24xlarge}\n"
    )
    with pytest.raises(ConfigError) as e:
        load_config(str(f))
    fields = {d["field"] for d in e.value.details}
    assert any("image_id" in x for x in fields) and any("subnets" in x for x in fields), fields
    f.write_text("orion:\n  capacity: {provider: gcp}\n")
    with pytest.raises(ConfigError) as e:
        load_config(str(f))
    assert e.value.details[0]["field"] == "orion.capacity.provider"
