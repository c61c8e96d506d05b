"""The pure part of applying a config snapshot in a region (policy/config_apply.py)."""

import pytest

from orion_ray.policy import config_apply as ca
from orion_ray.policy import config_snapshot as cfg

H = "a" * 64


def snap(version=1, **sections):
    s = cfg.build(sections, version=version)
    return {"version": s.version, "sha256": s.sha256, "body": dict(s.body)}


# -- reading ---------------------------------------------------------------------------------------
def test_read_snapshot_takes_the_body_or_the_canonical_text():
    raw = snap(tenants={"acme": {"weight": 2}})
    by_body = ca.read_snapshot(raw)
    text = cfg.build(raw["body"], version=1).text()
    by_text = ca.read_snapshot({"version": 1, "sha256": raw["sha256"], "text": text})
    assert by_body.sha256 == by_text.sha256 == raw["sha256"]
    assert by_body.body["tenants"] == {"acme": {"weight": 2}}


def test_read_snapshot_refuses_a_body_that_does_not_match_its_hash():
    raw = snap(tenants={"acme": {"weight": 2}})
    raw["body"]["tenants"]["acme"]["weight"] = 3
    with pytest.raises(cfg.SnapshotError, match="^sha256:"):
        ca.read_snapshot(raw)


def test_a_yaml_integer_and_a_json_float_hash_alike():
    a = snap(prices={"gpu:A100": 2})
    b = dict(a, body={**a["body"], "prices": {"gpu:A100": 2.0}})
    assert ca.read_snapshot(b).sha256 == a["sha256"]


@pytest.mark.parametrize(
    "raw, field",
    [
        ([], "snapshot"),
        ({"sha256": H, "body": {}}, "version"),
        ({"version": 0, "sha256": H, "body": {}}, "version"),
        ({"version": True, "sha256": H, "body": {}}, "version"),
        ({"version": 1, "sha256": "ABC", "body": {}}, "sha256"),
        ({"version": 1, "sha256": H}, "body"),
        ({"version": 1, "sha256": H, "body": {"nope": {}}}, "nope"),
        ({"version": 1, "sha256": H, "text": "{}"}, "sha256"),
    ],
)
def test_read_snapshot_names_the_field(raw, field):
    with pytest.raises(cfg.SnapshotError) as e:
        ca.read_snapshot(raw)
    assert str(e.value).startswith(field + ":")


# -- validation ------------------------------------------------------------------------------------
def test_every_section_is_parsed():
    body = ca.read_snapshot(
        snap(
            tenants={"acme": {"weight": 2, "quota": {"cpu": 4}}, "beta": {}},
            quotas={"acme": {"cpu": 8, "gpu": 1}},
            policies={"fair_share_half_life_s": 60},
            pools={"cpu-small": {"resources": {"CPU": 2}, "max_size": 3}},
            templates={"aws-east": {"max_workers": 4, "available_node_types": {}}},
            prices={"gpu:A100": 3.5, "cpu": 0.04},
        )
    ).body
    v = ca.validate(body)
    assert v.refused == []
    assert [t.id for t in v.tenants] == ["acme", "beta"]
    assert v.tenants[0].quota == {"cpu": 8.0, "gpu": 1.0}  # the quotas section wins
    assert v.tenants[0].weight == 2
    assert v.policy.fair_share_half_life_s == 60
    assert [(p.name, p.max_size) for p in v.pools] == [("cpu-small", 3)]
    assert v.templates == {"aws-east": {"max_workers": 4, "available_node_types": {}}}
    assert v.prices == {"cpu": 0.04, "gpu:A100": 3.5}


def test_empty_sections_leave_the_region_its_own():
    v = ca.validate(cfg.build({}, version=1).body)
    assert (v.tenants, v.policy, v.pools, v.templates, v.prices, v.refused) == (None,) * 5 + ([],)


def fields(v):
    return [r["field"] for r in v.refused]


@pytest.mark.parametrize(
    "sections, field",
    [
        ({"tenants": {"acme": {"weight": -1}}}, "tenants.acme.weight"),
        ({"tenants": {"acme": {"colour": "red"}}}, "tenants.acme.colour"),
        ({"tenants": {"acme": {"id": "other"}}}, "tenants.acme"),
        ({"tenants": {"admin": {}}}, "tenants.admin.id"),
        ({"tenants": {"acme": "heavy"}}, "tenants.acme"),
        ({"tenants": {"acme": {}}, "quotas": {"ghost": {"cpu": 1}}}, "quotas.ghost"),
        ({"tenants": {"acme": {}}, "quotas": {"acme": {"cpu": -1}}}, "quotas.acme.cpu"),
        ({"tenants": {"acme": {}}, "quotas": {"acme": {"cpu": "lots"}}}, "quotas.acme.cpu"),
        ({"tenants": {"acme": {}}, "quotas": {"acme": 4}}, "quotas.acme"),
        ({"policies": {"fair_share_half_life_s": -5}}, "policies.fair_share_half_life_s"),
        ({"policies": {"no_such": 1}}, "policies.no_such"),
        ({"pools": {"p": {"min_size": 5, "max_size": 2}}}, "pools.p.max_size"),
        ({"pools": {"p": {"launch_budget_s": 0}}}, "pools.p.launch_budget_s"),
        ({"pools": {"p": {"name": "q"}}}, "pools.p"),
        ({"templates": {"t": {"max_workers": -1}}}, "templates.t.max_workers"),
        ({"templates": {"t": {"available_node_types": []}}}, "templates.t.available_node_types"),
        ({"templates": {"t": 3}}, "templates.t"),
        ({"prices": {"gpu:A100": -1}}, "prices.gpu:A100"),
        ({"prices": {"gpu:A100": "cheap"}}, "prices.gpu:A100"),
        ({"prices": {"gpu:A100": True}}, "prices.gpu:A100"),
    ],
)
def test_a_bad_value_is_refused_naming_its_field(sections, field):
    v = ca.validate(cfg.build(sections, version=1).body, current_tenants=["acme"])
    assert field in fields(v), v.refused
    assert all(r["reason"] for r in v.refused)


def test_quotas_may_name_the_regions_tenants_only_with_the_tenants_section():
    body = cfg.build({"quotas": {"acme": {"cpu": 1}}}, version=1).body
    assert "quotas" in fields(ca.validate(body, current_tenants=["acme"]))


def test_every_problem_is_listed_not_only_the_first():
    body = cfg.build(
        {"tenants": {"a": {"weight": 0}}, "prices": {"x": -1}, "pools": {"p": {"max_size": -1}}}, version=1
    ).body
    assert {"tenants.a.weight", "prices.x", "pools.p.max_size"} <= set(fields(ca.validate(body)))


# -- keys ------------------------------------------------------------------------------------------
def tenants(**given):
    body = cfg.build({"tenants": given}, version=1).body
    return ca.validate(body).tenants


def test_a_tenant_keeps_its_keys_unless_the_snapshot_gives_hashes():
    current = {"1" * 64: "acme", "2" * 64: "beta", "3" * 64: "gone"}
    keys, refused = ca.tenant_keys(tenants(acme={}, beta={"api_key_sha256": ["4" * 64]}), current)
    assert refused == []
    assert keys == {"1" * 64: "acme", "4" * 64: "beta"}  # beta's hashes replaced, gone's dropped


def test_a_hash_of_two_tenants_is_refused():
    _, refused = ca.tenant_keys(tenants(a={"api_key_sha256": [H]}, b={"api_key_sha256": [H]}), {})
    assert refused and refused[0]["field"] == "tenants.b.api_key_sha256"


# -- pools -----------------------------------------------------------------------------------------
A = {"name": "a", "max_size": 2}
B = {"name": "b", "max_size": 4}


def test_pool_plan_adds_changes_and_retires():
    plan = ca.pool_plan([A, B], [{"name": "a", "max_size": 3}, {"name": "c"}], busy={"b": 1})
    assert (plan["added"], plan["changed"], plan["removed"], plan["retiring"]) == (["c"], ["a"], ["b"], ["b"])
    assert plan["pools"][:2] == [{"name": "a", "max_size": 3}, {"name": "c"}]
    retired = plan["pools"][2]
    assert (
        retired["name"] == "b"
        and retired["max_size"] == 0
        and retired["min_size"] == 0
        and retired["retired"]
    )


def test_a_removed_pool_without_nodes_is_dropped_at_once():
    plan = ca.pool_plan([A, B], [A], busy={"b": 0})
    assert plan["removed"] == ["b"] and plan["retiring"] == [] and plan["pools"] == [A]


def test_a_retiring_pool_stays_until_its_nodes_are_gone_and_can_come_back():
    first = ca.pool_plan([A, B], [A], busy={"b": 2})["pools"]
    still = ca.pool_plan(first, [A, {"name": "x"}], busy={"b": 1})
    assert still["retiring"] == ["b"] and still["removed"] == []
    gone = ca.pool_plan(still["pools"], [A, {"name": "x"}], busy={"b": 0})
    assert gone["retiring"] == [] and [p["name"] for p in gone["pools"]] == ["a", "x"]
    back = ca.pool_plan(first, [A, B], busy={"b": 2})
    assert back["added"] == ["b"] and back["retiring"] == [] and back["pools"] == [A, B]


def test_pools_go_back_to_the_regions_own_when_the_section_empties():
    assert ca.pool_plan([A], None)["pools"] is None
    assert ca.pool_plan(None, None) == {
        "added": [],
        "changed": [],
        "removed": [],
        "retiring": [],
        "pools": None,
    }


def test_an_unchanged_pool_list_is_no_action():
    plan = ca.pool_plan([A, B], [B, A])
    assert (plan["added"], plan["changed"], plan["removed"]) == ([], [], [])
