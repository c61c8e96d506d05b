"""KubeRay: every manifest in cluster_configs/kuberay validated against the CRD schemas in
../shared/kuberay-crds (strictly: unknown fields are errors), and the client's requests — through
a recording fake, and through the real kubernetes client to a small API server on 127.0.0.1."""

import copy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from orion_ray.errors import Conflict, NotFound, ValidationError
from orion_ray.kuberay.client import JSON_PATCH, KubeRayClient, KubernetesError
from orion_ray.kuberay.manifests import default_crd_dir, load_manifests, validate_manifest
from orion_ray.kuberay.serve_entry import OrionApiArgs

ROOT = Path(__file__).resolve().parents[3]
KUBERAY = ROOT / "cluster_configs" / "kuberay"


@pytest.fixture(scope="module")
def manifests():
    assert (default_crd_dir() / "rayclusters.yaml").exists(), "the KubeRay CRDs are missing"
    out = {}
    for f in ("raycluster.yaml", "rayservice.yaml", "rayjob.yaml"):
        for m in load_manifests(KUBERAY / f):
            out[m["kind"]] = m
    return out


# -- the manifests -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["RayCluster", "RayService", "RayJob"])
def test_manifest_is_valid_against_its_crd(manifests, kind):
    assert validate_manifest(manifests[kind]) == []


def test_raycluster_has_head_cpu_gpu_groups_and_gcs_fault_tolerance(manifests):
    spec = manifests["RayCluster"]["spec"]
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    gpu_limits = groups["gpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert "nvidia.com/gpu" in gpu_limits
    cpu_limits = groups["cpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert "nvidia.com/gpu" not in cpu_limits
    ft = spec["gcsFaultToleranceOptions"]
    assert ft["redisAddress"] and ft["redisPassword"]["valueFrom"]["secretKeyRef"]["key"]
    assert spec["enableInTreeAutoscaling"] and spec["autoscalerOptions"]["version"] == "v2"
    # the Redis it names is defined beside it
    redis = list(yaml.safe_load_all((KUBERAY / "redis.yaml").read_text()))
    services = [d["metadata"]["name"] for d in redis if d["kind"] == "Service"]
    assert ft["redisAddress"].split(":")[0] in services


def test_rayservice_deploys_orions_api_app(manifests):
    serve = yaml.safe_load(manifests["RayService"]["spec"]["serveConfigV2"])
    apps = {a["name"]: a for a in serve["applications"]}
    assert apps["orion-api"]["import_path"] == "orion_ray.kuberay.serve_entry:orion_api"
    OrionApiArgs.model_validate(apps["orion-api"]["args"])  # the args the builder will get
    cluster = manifests["RayService"]["spec"]["rayClusterConfig"]
    assert cluster["gcsFaultToleranceOptions"]["redisAddress"]


def test_rayjob_runs_on_the_orion_cluster(manifests):
    spec = manifests["RayJob"]["spec"]
    cluster = manifests["RayCluster"]["metadata"]["name"]
    assert spec["clusterSelector"] == {"ray.io/cluster": cluster}
    assert spec["entrypoint"].startswith("python ")


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda m: m["spec"].update(workerGroupSpec=m["spec"].pop("workerGroupSpecs")), "spec"),
        (
            lambda m: m["spec"]["workerGroupSpecs"][1].update(maxReplicas="eight"),
            "spec.workerGroupSpecs.1.maxReplicas",
        ),
        (lambda m: m["spec"]["workerGroupSpecs"][0].pop("groupName"), "spec.workerGroupSpecs.0"),
        (lambda m: m["spec"].pop("headGroupSpec"), "spec"),
        (lambda m: m["spec"]["autoscalerOptions"].update(version="v3"), "spec.autoscalerOptions.version"),
        (lambda m: m.update(apiVersion="ray.io/v1alpha1"), "apiVersion"),
        (lambda m: m["metadata"].update(name="Orion_Cluster"), "metadata.name"),
    ],
)
def test_broken_raycluster_is_refused_with_the_field(manifests, mutate, field):
    m = copy.deepcopy(manifests["RayCluster"])
    mutate(m)
    assert field in [p["field"] for p in validate_manifest(m)]


def test_broken_serve_config_and_runtime_env_are_refused(manifests):
    svc = copy.deepcopy(manifests["RayService"])
    svc["spec"]["serveConfigV2"] = svc["spec"]["serveConfigV2"].replace(":orion_api", ":gone")
    assert [p["field"] for p in validate_manifest(svc)] == ["spec.serveConfigV2.applications.0.import_path"]
    svc["spec"]["serveConfigV2"] = "applications: [{name: x}]"
    assert [p["field"] for p in validate_manifest(svc)] == ["spec.serveConfigV2"]
    job = copy.deepcopy(manifests["RayJob"])
    job["spec"]["runtimeEnvYAML"] = "- just a list"
    assert [p["field"] for p in validate_manifest(job)] == ["spec.runtimeEnvYAML"]


def test_serve_builder_args_are_checked():
    from pydantic import ValidationError as PydanticValidationError

    good = {"admin_key_sha256": ["0" * 64], "control_token_dir": "/etc/orion/control"}
    OrionApiArgs.model_validate(good)
    for bad in (
        {**good, "admin_key_sha256": ["not-a-hash"]},
        {**good, "admin_key_sha256": []},
        {**good, "surprise": 1},
    ):
        with pytest.raises(PydanticValidationError):
            OrionApiArgs.model_validate(bad)


@pytest.mark.parametrize("token_dir", [None, ""])
def test_serve_builder_refuses_args_without_a_control_token_dir(token_dir):
    """Without the credential every privileged actor method would be open to workload code: an
    existing manifest without ``control_token_dir`` is refused, naming the field."""
    from pydantic import ValidationError as PydanticValidationError

    from orion_ray.kuberay.serve_entry import orion_api

    args = {"admin_key_sha256": ["0" * 64]}
    if token_dir is not None:
        args["control_token_dir"] = token_dir
    for build in (OrionApiArgs.model_validate, orion_api):  # refused before anything starts
        with pytest.raises(PydanticValidationError) as e:
            build(args)
        assert [err["loc"] for err in e.value.errors()] == [("control_token_dir",)]


@pytest.mark.parametrize("content", [None, "", " \n"])
def test_control_token_missing_or_empty_is_refused_naming_the_field(tmp_path, content):
    from orion_ray.errors import ConfigError
    from orion_ray.kuberay.serve_entry import read_control_token

    if content is not None:
        (tmp_path / "control_token").write_text(content)
    with pytest.raises(ConfigError) as e:
        read_control_token(str(tmp_path))
    assert e.value.details[0]["field"] == "control_token_dir"
    assert "control_token_dir" in e.value.message and str(tmp_path / "control_token") in e.value.message
    with pytest.raises(ConfigError):  # the directory itself missing (the Secret not mounted)
        read_control_token(str(tmp_path / "absent"))


def test_control_token_is_read_from_the_mounted_secret(tmp_path):
    from orion_ray.kuberay.serve_entry import read_control_token

    f = tmp_path / "control_token"
    f.write_text("s3cret-from-the-secret\n")
    f.chmod(0o400)  # as the Secret is mounted (defaultMode 0400)
    assert read_control_token(str(tmp_path)) == "s3cret-from-the-secret"


def _head_and_workers(manifest):
    spec = manifest["spec"].get("rayClusterConfig", manifest["spec"])
    head = spec["headGroupSpec"]["template"]["spec"]
    return head, [g["template"]["spec"] for g in spec["workerGroupSpecs"]]


def _control_mounts(pod):
    """(container, mount) of every mount of a volume made from the orion-control Secret."""
    volumes = pod.get("volumes", [])
    names = {v["name"] for v in volumes if (v.get("secret") or {}).get("secretName") == "orion-control"}
    return [(c, m) for c in pod["containers"] for m in c.get("volumeMounts", []) if m["name"] in names]


@pytest.mark.parametrize("kind", ["RayCluster", "RayService"])
def test_only_the_head_mounts_the_control_secret(manifests, kind):
    head, workers = _head_and_workers(manifests[kind])
    secret = [v for v in head["volumes"] if v["name"] == "orion-control"][0]["secret"]
    assert secret == {
        "secretName": "orion-control",
        "defaultMode": 0o400,
        "items": [{"key": "control_token", "path": "control_token"}],
    }
    ((container, mount),) = _control_mounts(head)
    assert container["name"] == "ray-head" and mount["readOnly"] is True
    assert head["securityContext"]["fsGroup"] == 100  # the image's user can read the 0400 file
    for pod in workers:  # workloads run there: no Secret volume, no env var from it
        assert not any("secret" in v for v in pod.get("volumes", []))
        for c in pod["containers"]:
            assert "volumeMounts" not in c and "envFrom" not in c
            assert not any("valueFrom" in e for e in c.get("env", []))


def test_the_token_dir_is_where_the_head_mounts_the_secret(manifests):
    serve = yaml.safe_load(manifests["RayService"]["spec"]["serveConfigV2"])
    args = OrionApiArgs.model_validate(serve["applications"][0]["args"])
    head, _ = _head_and_workers(manifests["RayService"])
    ((_, mount),) = _control_mounts(head)
    assert mount["mountPath"] == args.control_token_dir
    # RayCluster: `orion up` on the head uses $ORION_HOME/control_token, which is the Secret's file
    head, _ = _head_and_workers(manifests["RayCluster"])
    ((container, mount),) = _control_mounts(head)
    home = {e["name"]: e.get("value") for e in container["env"]}["ORION_HOME"]
    assert (mount["mountPath"], mount["subPath"]) == (f"{home}/control_token", "control_token")


def test_the_api_replica_reading_the_token_file_is_pinned_to_the_head():
    from orion_ray.api.serve_app import HEAD_RESOURCE, build_api_app

    app = build_api_app(["0" * 64], 1 << 20, control_token_home="/etc/orion/control")
    assert app._bound_deployment.ray_actor_options["resources"] == {HEAD_RESOURCE: 0.001}


# -- the client over a recording fake ------------------------------------------------------------
class RecordingApi:
    """Records every CustomObjectsApi call; GET answers from ``objects``."""

    def __init__(self, objects=None, fail=None):
        self.calls = []
        self.objects = objects or {}
        self.fail = fail

    def _rec(self, name, args, kwargs):
        self.calls.append((name, args, kwargs))
        if self.fail is not None:
            raise self.fail

    def create_namespaced_custom_object(self, *args, **kwargs):
        self._rec("create", args, kwargs)
        return args[-1]

    def get_namespaced_custom_object(self, group, version, ns, plural, name, **kwargs):
        self._rec("get", (group, version, ns, plural, name), kwargs)
        return copy.deepcopy(self.objects[name])

    def patch_namespaced_custom_object(self, *args, **kwargs):
        self._rec("patch", args, kwargs)
        return {}

    def delete_namespaced_custom_object(self, *args, **kwargs):
        self._rec("delete", args, kwargs)
        return {}

    def list_namespaced_custom_object(self, *args, **kwargs):
        self._rec("list", args, kwargs)
        return {"items": list(self.objects.values())}


class FakeApiException(Exception):
    def __init__(self, status, reason):
        super().__init__(reason)
        self.status, self.reason = status, reason


def test_create_validates_then_sends(manifests):
    api = RecordingApi()
    c = KubeRayClient(api, namespace="ml")
    c.create(manifests["RayJob"])
    assert api.calls == [("create", ("ray.io", "v1", "ml", "rayjobs", manifests["RayJob"]), {})]
    bad = copy.deepcopy(manifests["RayCluster"])
    bad["spec"]["workerGroupSpecs"][0]["replicas"] = "two"
    with pytest.raises(ValidationError) as e:
        c.create(bad)
    assert e.value.details[0]["field"] == "spec.workerGroupSpecs.0.replicas"
    assert len(api.calls) == 1  # the invalid one was never sent
    with pytest.raises(ValidationError):
        c.create({"kind": "Pod", "metadata": {"name": "x"}})


def test_scale_sends_a_json_patch_for_one_group(manifests):
    rc = manifests["RayCluster"]
    api = RecordingApi({"orion": rc})
    KubeRayClient(api, namespace="ml").scale_worker_group("orion", "gpu", 3)
    name, args, kwargs = api.calls[-1]
    assert name == "patch" and args[:5] == ("ray.io", "v1", "ml", "rayclusters", "orion")
    assert args[5] == [
        {"op": "test", "path": "/spec/workerGroupSpecs/1/groupName", "value": "gpu"},
        {"op": "replace", "path": "/spec/workerGroupSpecs/1/replicas", "value": 3},
    ]
    assert kwargs == {"_content_type": "application/json-patch+json"}


def test_scale_refuses_unknown_groups_and_out_of_range(manifests):
    api = RecordingApi({"orion": manifests["RayCluster"]})
    c = KubeRayClient(api)
    with pytest.raises(NotFound):
        c.scale_worker_group("orion", "tpu", 1)
    for n in (-1, 9, "2"):
        with pytest.raises(ValidationError) as e:
            c.scale_worker_group("orion", "gpu", n)
        assert e.value.details[0]["field"] == "replicas"
    assert [c[0] for c in api.calls] == ["get"] * 4  # nothing was patched


@pytest.mark.parametrize(
    "status, exc", [(404, NotFound), (409, Conflict), (422, Conflict), (500, KubernetesError)]
)
def test_api_errors_are_mapped(status, exc):
    c = KubeRayClient(RecordingApi(fail=FakeApiException(status, "nope")))
    with pytest.raises(exc):
        c.delete("RayJob", "x")


# -- the real kubernetes client against a small API server on loopback ---------------------------
def apply_json_patch(obj, ops):
    """The three operations the client uses (RFC 6902 test/replace/add); raises on a failed test."""
    for op in ops:
        *parents, last = [p for p in op["path"].split("/")[1:]]
        target = obj
        for p in parents:
            target = target[int(p)] if isinstance(target, list) else target[p]
        key = int(last) if isinstance(target, list) else last
        if op["op"] == "test":
            if target[key] != op["value"]:
                raise ValueError(f"test failed at {op['path']}")
        elif op["op"] in ("replace", "add"):
            target[key] = op["value"]
        else:
            raise ValueError(f"unsupported op {op['op']}")


class FakeApiServer(BaseHTTPRequestHandler):
    """Custom objects under /apis/ray.io/v1/namespaces/<ns>/<plural>[/<name>], as the API server
    keeps them; PATCH accepts JSON patches only (a merge patch would be a 415 here)."""

    store = {}
    requests = []

    def log_message(self, *args):
        pass

    def _reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code, reason):
        self._reply(
            code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code}
        )

    def _parts(self):
        parts = self.path.split("?")[0].strip("/").split("/")
        # apis ray.io v1 namespaces <ns> <plural> [<name>]
        return parts[4], parts[5], (parts[6] if len(parts) > 6 else None)

    def _body(self):
        n = int(self.headers.get("Content-Length", 0))
        return json.loads(self.rfile.read(n)) if n else None

    def _record(self, body=None):
        FakeApiServer.requests.append((self.command, self.path, self.headers.get("Content-Type"), body))

    def do_POST(self):
        ns, plural, _ = self._parts()
        body = self._body()
        self._record(body)
        key = (ns, plural, body["metadata"]["name"])
        if key in self.store:
            return self._status(409, "AlreadyExists")
        self.store[key] = body
        self._reply(201, body)

    def do_GET(self):
        ns, plural, name = self._parts()
        self._record()
        if name is None:
            return self._reply(
                200, {"items": [v for (n, p, _), v in self.store.items() if (n, p) == (ns, plural)]}
            )
        if (ns, plural, name) not in self.store:
            return self._status(404, "NotFound")
        self._reply(200, self.store[(ns, plural, name)])

    def do_PATCH(self):
        ns, plural, name = self._parts()
        body = self._body()
        self._record(body)
        if self.headers.get("Content-Type") != JSON_PATCH:
            return self._status(415, "UnsupportedMediaType")
        obj = copy.deepcopy(self.store.get((ns, plural, name)))
        if obj is None:
            return self._status(404, "NotFound")
        try:
            apply_json_patch(obj, body)
        except (ValueError, KeyError, IndexError) as exc:
            return self._status(422, str(exc))
        self.store[(ns, plural, name)] = obj
        self._reply(200, obj)

    def do_DELETE(self):
        ns, plural, name = self._parts()
        self._record()
        if self.store.pop((ns, plural, name), None) is None:
            return self._status(404, "NotFound")
        self._reply(200, {"kind": "Status", "status": "Success"})


@pytest.fixture
def k8s():
    from kubernetes import client as k8s_client

    FakeApiServer.store, FakeApiServer.requests = {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApiServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    cfg = k8s_client.Configuration(host=f"http://127.0.0.1:{server.server_address[1]}")
    api_client = k8s_client.ApiClient(cfg)
    yield KubeRayClient(k8s_client.CustomObjectsApi(api_client), namespace="ml")
    api_client.close()
    server.shutdown()
    server.server_close()
    thread.join()


def test_real_client_creates_and_scales_a_worker_group(k8s, manifests):
    k8s.create(manifests["RayCluster"])
    assert [r["metadata"]["name"] for r in k8s.list("RayCluster")] == ["orion"]
    k8s.scale_worker_group("orion", "gpu", 4)
    method, path, ctype, body = FakeApiServer.requests[-1]
    assert (method, path) == ("PATCH", "/apis/ray.io/v1/namespaces/ml/rayclusters/orion")
    assert ctype == "application/json-patch+json"
    assert body[-1] == {"op": "replace", "path": "/spec/workerGroupSpecs/1/replicas", "value": 4}
    groups = k8s.get("RayCluster", "orion")["spec"]["workerGroupSpecs"]
    assert [(g["groupName"], g["replicas"]) for g in groups] == [("cpu", 1), ("gpu", 4)]
    # the other group's whole spec is untouched (a merge patch on the list would have replaced it)
    assert groups[0] == manifests["RayCluster"]["spec"]["workerGroupSpecs"][0]
    k8s.delete("RayCluster", "orion")
    with pytest.raises(NotFound):
        k8s.get("RayCluster", "orion")


def test_real_client_scale_conflicts_when_groups_moved(k8s, manifests):
    k8s.create(manifests["RayCluster"])
    real_get = k8s.get

    def stale_get(kind, name):  # a read taken before someone reordered the groups
        obj = real_get(kind, name)
        obj["spec"]["workerGroupSpecs"].reverse()
        return obj

    k8s.get = stale_get
    with pytest.raises(Conflict):
        k8s.scale_worker_group("orion", "gpu", 2)
    k8s.get = real_get
    groups = k8s.get("RayCluster", "orion")["spec"]["workerGroupSpecs"]
    assert [g["replicas"] for g in groups] == [1, 0]  # nothing scaled


def test_real_client_create_twice_is_a_conflict(k8s, manifests):
    k8s.create(manifests["RayJob"])
    with pytest.raises(Conflict):
        k8s.create(manifests["RayJob"])
