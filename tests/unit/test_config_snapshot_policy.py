"""Config snapshots (orion_ray/policy/config_snapshot.py): canonical, hashed, diffed, applied (pure)."""

import json

import pytest

from orion_ray.policy.config_snapshot import (
    SECTIONS,
    SnapshotError,
    build,
    canonical,
    diff,
    digest,
    plan_apply,
    publish,
    verify,
)

BASE = {
    "tenants": {"acme": {"weight": 2, "cohort": "gold"}},
    "quotas": {"acme": {"gpu": 8.0}},
    "pools": {"gpu-a100": {"min": 0, "max": 4, "instance_type": "p4d.24xlarge"}},
    "prices": {"us-east-1": {"A100": 4.1}},
}


def test_every_section_is_present_and_the_hash_is_stable():
    s = build(BASE, version=1)
    assert set(s.body) == set(SECTIONS) and s.body["templates"] == {}
    assert build(dict(reversed(list(BASE.items()))), version=1).sha256 == s.sha256
    assert len(s.sha256) == 64 and json.loads(s.text())["quotas"] == {"acme": {"gpu": 8}}


def test_integral_floats_hash_like_ints():
    a = build({"quotas": {"acme": {"gpu": 8.0}}}, version=1)
    b = build({"quotas": {"acme": {"gpu": 8}}}, version=1)
    assert a.sha256 == b.sha256
    assert build({"quotas": {"acme": {"gpu": 8.5}}}, version=1).sha256 != a.sha256


def test_bad_input_names_the_field():
    with pytest.raises(SnapshotError, match="^colors: not a config section"):
        build({"colors": {}}, version=1)
    with pytest.raises(SnapshotError, match=r"^quotas\.acme\.gpu: nan is not a finite number"):
        build({"quotas": {"acme": {"gpu": float("nan")}}}, version=1)
    with pytest.raises(SnapshotError, match="^pools: a mapping"):
        build({"pools": ["a"]}, version=1)
    with pytest.raises(SnapshotError, match=r"^tenants\.a: set is not JSON"):
        build({"tenants": {"a": {1, 2}}}, version=1)
    with pytest.raises(SnapshotError, match="^version"):
        build({}, version=0)
    with pytest.raises(SnapshotError, match="keys must be strings"):
        build({"tenants": {1: {}}}, version=1)


def test_publish_bumps_the_version_only_when_the_content_changes():
    s1 = publish(None, BASE)
    assert s1.version == 1
    assert publish(s1, json.loads(json.dumps(BASE))) is s1
    s2 = publish(s1, {**BASE, "prices": {"us-east-1": {"A100": 3.9}}})
    assert s2.version == 2 and s2.sha256 != s1.sha256


def test_verify_checks_the_hash_and_the_form():
    s = build(BASE, version=3)
    assert verify(3, s.sha256, s.text()) == s
    with pytest.raises(SnapshotError, match="^sha256"):
        verify(3, s.sha256, s.text().replace("4.1", "4.2"))
    loose = json.dumps(s.body, indent=1)
    with pytest.raises(SnapshotError, match="^body: not in canonical form"):
        verify(3, digest(loose), loose)
    with pytest.raises(SnapshotError, match="^body: a JSON object"):
        verify(3, digest("[1]"), "[1]")


def test_canonical_is_compact_and_sorted():
    assert canonical({"b": 1, "a": [1.0, {"d": None, "c": True}]}) == '{"a":[1,{"c":true,"d":null}],"b":1}'


def test_diff_names_added_removed_changed_per_section():
    s1 = build(BASE, version=1)
    s2 = build(
        {
            **BASE,
            "tenants": {"acme": {"weight": 2, "cohort": "gold"}, "beta": {"weight": 1}},
            "quotas": {},
            "pools": {"gpu-a100": {"min": 0, "max": 8, "instance_type": "p4d.24xlarge"}},
        },
        version=2,
    )
    d = diff(s1, s2)
    assert d == {
        "tenants": {"added": ["beta"], "removed": [], "changed": []},
        "quotas": {"added": [], "removed": ["acme"], "changed": []},
        "pools": {"added": [], "removed": [], "changed": ["gpu-a100"]},
    }
    assert diff(s2, s2) == {}
    assert set(diff(None, s1)) == {"tenants", "quotas", "pools", "prices"}


def test_plan_apply_is_whole_and_names_the_pools_to_reconcile():
    s1 = build(BASE, version=1)
    s2 = build({**BASE, "pools": {"cpu": {"max": 10}}}, version=2)
    p = plan_apply(s1, s2)
    assert (p.from_version, p.to_version, p.sha256) == (1, 2, s2.sha256)
    assert p.restarts_pools == ["cpu", "gpu-a100"] and not p.noop
    assert p.body == s2.body  # every section, not only the changed ones: applied in one swap
    assert plan_apply(s2, s2).noop
    assert plan_apply(None, s1).from_version == 0


def test_plan_apply_refuses_a_stale_or_forked_snapshot():
    s1, s2 = build(BASE, version=1), build({**BASE, "quotas": {}}, version=2)
    with pytest.raises(SnapshotError, match="^version: 1 is older than the applied 2"):
        plan_apply(s2, s1)
    fork = build({"tenants": {}}, version=2)
    with pytest.raises(SnapshotError, match="^sha256: version 2 already applied"):
        plan_apply(s2, fork)
