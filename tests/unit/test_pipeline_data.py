"""Data between pipeline nodes: the artifact store's two adapters (a directory; S3 against a real
moto server on loopback), the controller's side of it (large outs written and read back, inline
caps, tenant and run namespacing, a value posing as a reference), ``orion.pipelines`` config, and
reading one output."""

from __future__ import annotations

import json
import logging
import os

import boto3
import pytest
from moto.server import ThreadedMotoServer

from orion_ray.config import ArtifactsConfig, PipelinesConfig, load_config
from orion_ray.errors import ConfigError, NotFound, PayloadTooLarge, ValidationError
from orion_ray.models import Workload
from orion_ray.pipelines.artifacts import (
    ArtifactError,
    ArtifactTooLarge,
    LocalArtifacts,
    S3Artifacts,
    artifact_key,
    check_key,
    open_artifacts,
)
from orion_ray.pipelines.dataflow import DataFlow
from orion_ray.pipelines.outputs import data_flow, has_container_runtime, read_output
from orion_ray.pipelines.records import MAX_OUTPUT_CHARS, SUBMITTED, SUCCEEDED, NodeRun, PipelineRun
from orion_ray.pipelines.refs import MARKER, artifact_uris, is_ref
from orion_ray.status import Status

BUCKET = "orion-artifacts"


# -- the local adapter ------------------------------------------------------------------------------
def test_local_put_get_delete_round_trip(tmp_path):
    store = LocalArtifacts(tmp_path / "a")
    uri = store.put("acme/run-1/n/1/out", b'{"x": 1}')
    assert uri == (tmp_path / "a" / "acme" / "run-1" / "n" / "1" / "out").resolve().as_uri()
    assert store.get(uri) == b'{"x": 1}'
    assert store.put("acme/run-1/n/1/out", b"[2]") == uri  # a repeated put replaces
    assert store.get(uri, within="acme/run-1/") == b"[2]"
    store.delete(uri)
    store.delete(uri)  # absent already: nothing to do
    with pytest.raises(ArtifactError, match="missing"):
        store.get(uri)


@pytest.mark.parametrize("key", ["", "a//b", "a/../b", "../x", "a/./b", "a/b c", "/abs", "a/b/"])
def test_keys_with_anything_but_plain_parts_are_refused(key):
    with pytest.raises(ArtifactError, match="invalid artifact key"):
        check_key(key)


def test_local_refuses_uris_outside_its_root_or_the_asked_prefix(tmp_path):
    store = LocalArtifacts(tmp_path / "a")
    uri = store.put(artifact_key("acme", "r1", "n", 1, "v"), b"1")
    with pytest.raises(ArtifactError, match="not this run's"):
        store.get(uri, within="bob/")
    with pytest.raises(ArtifactError, match="not this run's"):
        store.get(uri, within="acme/r2/")
    for foreign in ("file:///etc/passwd", (tmp_path / "a").as_uri() + "/../secret", "s3://b/k"):
        with pytest.raises(ArtifactError):
            store.get(foreign)
    with pytest.raises(ArtifactError):
        store.delete("file:///etc/passwd")


def test_local_get_is_bounded(tmp_path):
    store = LocalArtifacts(tmp_path)
    uri = store.put("t/r/n/1/o", b"x" * 100)
    with pytest.raises(ArtifactTooLarge) as exc:
        store.get(uri, max_bytes=99)
    assert exc.value.size == 100 and store.get(uri, max_bytes=100) == b"x" * 100


# -- the S3 adapter, against a real moto server on a free loopback port -----------------------------
@pytest.fixture(scope="module")
def moto_url():
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(moto_url):
    client = boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url=moto_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    if BUCKET not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
        client.create_bucket(Bucket=BUCKET)
    yield client
    client.close()


def test_s3_put_get_delete_round_trip(s3):
    store = S3Artifacts(BUCKET, "orion/art", s3)
    uri = store.put("acme/r1/n/1/v", b'{"a": [1, 2]}')
    assert uri == f"s3://{BUCKET}/orion/art/acme/r1/n/1/v"
    assert s3.get_object(Bucket=BUCKET, Key="orion/art/acme/r1/n/1/v")["Body"].read() == b'{"a": [1, 2]}'
    assert store.get(uri, within="acme/r1/") == b'{"a": [1, 2]}'
    store.delete(uri)
    with pytest.raises(ArtifactError, match="missing"):
        store.get(uri)


def test_s3_refuses_other_buckets_prefixes_and_tenants(s3):
    store = S3Artifacts(BUCKET, "p", s3)
    uri = store.put("acme/r1/n/1/v", b"1")
    with pytest.raises(ArtifactError, match="not this run's"):
        store.get(uri, within="bob/r1/")
    s3.put_object(Bucket=BUCKET, Key="elsewhere/x", Body=b"secret")
    for foreign in (
        f"s3://{BUCKET}/elsewhere/x",
        "s3://other-bucket/p/acme/r1/n/1/v",
        f"s3://{BUCKET}/p/../x",
    ):
        with pytest.raises(ArtifactError):
            store.get(foreign)


def test_s3_get_is_bounded_before_reading_the_body(s3):
    store = S3Artifacts(BUCKET, "", s3)
    uri = store.put("t/r/n/1/big", b"y" * 1000)
    with pytest.raises(ArtifactTooLarge):
        store.get(uri, max_bytes=999)
    assert len(store.get(uri, max_bytes=1000)) == 1000


def test_s3_from_config_uses_the_endpoint(moto_url, s3, monkeypatch):
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(k, "testing")
    cfg = ArtifactsConfig(
        backend="s3", bucket=BUCKET, prefix="cfg", region="us-east-1", endpoint_url=moto_url
    )
    store = open_artifacts(cfg, default_root="/nowhere")
    assert isinstance(store, S3Artifacts)
    assert store.get(store.put("t/r/n/1/o", b"ok")) == b"ok"


# -- the controller's side: outs written at settle time, inputs read back at launch ----------------
def run_of(tenant="acme", sid="r1") -> PipelineRun:
    return PipelineRun(
        run_id="pl-x",
        tenant_id=tenant,
        submission_id=sid,
        status="running",
        body={},
        created_at=0,
        updated_at=0,
    )


def completed(result) -> Workload:
    return Workload.model_validate(
        {
            "workload_id": "wl-1",
            "tenant_id": "acme",
            "spec": {"workload_type": "task", "function": "m:f"},
            "status": Status.COMPLETED,
            "submitted_at": 0,
            "updated_at": 0,
            "result": result,
        }
    )


@pytest.fixture
def flow(tmp_path):
    return DataFlow(LocalArtifacts(tmp_path), inline_max_bytes=100)


def test_a_small_out_stays_inline_and_a_large_one_becomes_a_reference(flow):
    n = NodeRun("prod", status=SUBMITTED, attempt=2, workload_id="wl-1")
    big = list(range(100))
    view = flow.settle_view(
        run_of(), [n], {"wl-1": completed({"small": 1, "big": big})}, {"prod": ["small", "big"]}
    )
    got = view["wl-1"].result
    assert got["small"] == 1 and is_ref(got["big"])
    assert got["big"][MARKER].endswith("/acme/r1/prod/2/big") and got["big"]["bytes"] > 100
    assert flow.resolve(run_of(), {"x": got["big"], "y": 1}) == {"x": big, "y": 1}
    assert artifact_uris(got) == {"big": got["big"][MARKER]}


def test_nothing_moves_when_everything_is_small(flow):
    w = completed({"a": 1, "b": "two"})
    assert (
        flow.settle_view(
            run_of(),
            [NodeRun("n", status=SUBMITTED, attempt=1, workload_id="wl-1")],
            {"wl-1": w},
            {"n": ["a", "b"]},
        )["wl-1"]
        is w
    )


def test_many_medium_outs_together_go_out_largest_first(tmp_path):
    flow = DataFlow(LocalArtifacts(tmp_path), inline_max_bytes=65_536)
    outs = {f"o{i}": "x" * (10_000 + i) for i in range(10)}  # each under the cap, together over 64 KiB
    got = flow.externalize(run_of(), NodeRun("n", attempt=1), list(outs), outs)
    moved = [o for o in outs if is_ref(got[o])]
    assert moved and "o9" in moved and "o0" not in moved
    assert len(json.dumps({o: got[o] for o in outs})) <= MAX_OUTPUT_CHARS


def test_an_out_posing_as_a_reference_fails_the_attempt(flow):
    n = NodeRun("n", status=SUBMITTED, attempt=1, workload_id="wl-1")
    w = completed({"v": {MARKER: "file:///etc/passwd"}})
    got = flow.settle_view(run_of(), [n], {"wl-1": w}, {"n": ["v"]})["wl-1"]
    assert got.status == Status.FAILED and "reserved" in got.error


def test_another_tenants_or_runs_reference_is_never_read(flow, tmp_path):
    uri = flow.store.put(artifact_key("bob", "r1", "n", 1, "v"), b"[1]")
    for run in (run_of("acme", "r1"), run_of("bob", "r2")):
        with pytest.raises(ValidationError) as exc:
            flow.resolve(run, {"v": {MARKER: uri}})
        assert exc.value.details[0]["field"] == "ins.v"
    assert flow.resolve(run_of("bob", "r1"), {"v": {MARKER: uri}}) == {"v": [1]}


def test_a_tampered_artifact_is_refused_by_its_checksum(flow):
    n = NodeRun("n", status=SUBMITTED, attempt=1, workload_id="wl-1")
    ref = flow.settle_view(run_of(), [n], {"wl-1": completed({"v": "z" * 500})}, {"n": ["v"]})["wl-1"].result[
        "v"
    ]
    path = ref[MARKER][len("file://") :]
    with open(path, "w") as f:
        f.write('"changed"')
    with pytest.raises(ValidationError, match="checksum"):
        flow.resolve(run_of(), {"v": ref})


# -- config ----------------------------------------------------------------------------------------
def write(tmp_path, text):
    p = tmp_path / "orion.yaml"
    p.write_text(text)
    return str(p)


@pytest.mark.parametrize(
    "section, field",
    [
        ("{artifacts: {backend: s3}}", "orion.pipelines.artifacts"),
        ("{artifacts: {backend: gcs}}", "orion.pipelines.artifacts.backend"),
        ("{artifacts: {inline_max_bytes: 70000}}", "orion.pipelines.artifacts.inline_max_bytes"),
        ("{artifacts: {backend: local, bucket: b-b-b}}", "orion.pipelines.artifacts"),
        ("{container_runtime: maybe}", "orion.pipelines.container_runtime"),
        ("{artefacts: {}}", "orion.pipelines.artefacts"),
    ],
)
def test_bad_pipelines_config_is_a_clear_error(tmp_path, section, field):
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, f"orion:\n  pipelines: {section}\n"))
    assert any(d["field"].startswith(field) for d in exc.value.details), exc.value.details


def test_config_defaults_and_the_local_root(tmp_path):
    cfg = load_config(
        write(tmp_path, "orion:\n  pipelines: {artifacts: {inline_max_bytes: 10}}\n")
    ).orion.pipelines
    flow = data_flow(cfg, store_path=str(tmp_path / "orion.db"))
    assert flow is not None and flow.inline_max_bytes == 10
    assert flow.store.root == (tmp_path / "artifacts").resolve()
    assert data_flow(None, store_path=":memory:") is None
    root = data_flow(PipelinesConfig(artifacts=ArtifactsConfig(root=str(tmp_path / "r"))), store_path=None)
    assert root is not None and root.store.root == (tmp_path / "r").resolve()


def test_container_runtime_detection():
    assert has_container_runtime(None, which=lambda name: None) is False
    assert has_container_runtime(None, which=lambda name: "/usr/bin/podman" if name == "podman" else None)
    assert has_container_runtime(PipelinesConfig(container_runtime=True), which=lambda name: None)
    assert not has_container_runtime(PipelinesConfig(container_runtime=False), which=lambda n: "/x")


# -- reading one output -----------------------------------------------------------------------------
def test_read_output_inline_artifact_missing_and_bounded(flow):
    run = run_of()
    ref = flow.externalize(run, NodeRun("n", attempt=1), ["big"], {"big": "q" * 300})["big"]
    nodes = [
        NodeRun("n", status=SUCCEEDED, outputs={"small": [1, 2], "big": ref}),
        NodeRun("m", status=SUBMITTED),
    ]
    assert read_output(run, nodes, node="n", name="small", data=flow) == {"uri": None, "data": b"[1, 2]"}
    got = read_output(run, nodes, node="n", name="big", data=flow)
    assert got["uri"] == ref[MARKER] and json.loads(got["data"]) == "q" * 300
    with pytest.raises(PayloadTooLarge):
        read_output(run, nodes, node="n", name="big", data=flow, max_bytes=100)
    for node, name in (("n", "nope"), ("m", "x"), ("zz", "small")):
        with pytest.raises(NotFound):
            read_output(run, nodes, node=node, name=name, data=flow)
    os.remove(ref[MARKER][len("file://") :])
    with pytest.raises(NotFound, match="missing"):
        read_output(run, nodes, node="n", name="big", data=flow)
