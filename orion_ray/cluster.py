"""``orion up`` / ``orion down``: start or attach to Ray, deploy the scheduler and the API, and stop them.

Ray's auth is decided here, explicitly. A local head started by Orion runs with token auth
(``RAY_AUTH_MODE=token``): Ray's gRPC servers (GCS, raylet, every worker) listen on all
interfaces whatever ``--node-ip-address`` says (Ray turns ``127.0.0.1`` back into the machine's
address), and the dashboard agent's Jobs endpoint on the node's address, so "loopback only"
cannot be had from Ray's flags; with auth off, anyone who reaches the machine could submit a job.
The token is Ray's own default file, ``~/.ray/auth_token`` (created 0600 if missing), so plain
Ray tools on the machine (`ray status`, `ray job submit`, `ray.init("auto")`) need only
``RAY_AUTH_MODE=token`` to find and send it. The dashboard also listens on loopback only.
Attaching to a cluster with ``--address`` uses whatever auth that cluster was given (set
``RAY_AUTH_MODE``/the token in the environment as Ray documents).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Optional

import httpx

from . import gcs_ha
from .api.auth import hash_key, new_key
from .backup.actor_name import BACKUP_NAME
from .config import OrionConfig, orion_home, tenant_key_hashes
from .control import load_or_create_token, token_path
from .credentials import read_credentials, write_credentials
from .ha_config import HaConfig
from .names import AUTOSCALER_NAME, EXECUTOR_NAME, NAMESPACE, SCHEDULER_NAME, SERVING_NAME
from .pids import alive as _alive
from .ray_env import ray_process_env
from .store.files import open_private, private_dir, write_private
from .store.lease import release_recorded as release_recorded_lease
from .store.open import prepare_for_cluster as prepare_store

STATE_FILE = "cluster.json"


def _state_path() -> Path:
    return orion_home() / STATE_FILE


def _read_state() -> dict:
    try:
        return json.loads(_state_path().read_text())
    except (OSError, ValueError):
        return {}


def _write_state(state: dict) -> None:
    private_dir(_state_path().parent)
    write_private(_state_path(), json.dumps(state))


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _port_or_free(preferred: int) -> int:
    if not _port_open("127.0.0.1", preferred) and not _port_open(_node_ip(), preferred):
        return preferred
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _node_ip() -> str:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no traffic is sent: this only picks the outgoing address
            return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"


def _ray_bin() -> str:
    exe = Path(sys.executable).parent / "ray"
    return str(exe) if exe.exists() else (shutil.which("ray") or "ray")


def ray_token_path() -> Path:
    """Ray's default token file, where Ray's own tools and drivers look for it."""
    return Path.home() / ".ray" / "auth_token"


def ensure_ray_token() -> Path:
    """The token file of Orion's local head: Ray's default one, created (0600, 256 random bits)
    if missing, kept as it is otherwise (other heads on the machine may already use it)."""
    path = ray_token_path()
    if not path.exists() or not path.read_text().strip():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    elif path.stat().st_mode & 0o077 and path.stat().st_uid == os.getuid():
        path.chmod(0o600)  # Ray writes it 0644: other users of the machine could read it
    return path


def start_local_head(
    ray_port: int,
    dashboard_port: int,
    num_cpus: Optional[float],
    num_gpus: Optional[float],
    resources: Optional[dict],
    *,
    pass_env: Iterable[str] = (),
    refused_env: Iterable[str] = (),
    ha: Optional[HaConfig] = None,
) -> dict:
    """Start ``ray start --head --block`` in its own process group; return its state.

    The head runs with Ray's token auth (see the module's docstring; ``ensure_ray_token``), its
    dashboard on loopback, and an environment built from an allowlist (``ray_env.ray_process_env``): no
    tenant key (``refused_env`` names their variables), no ``ORION_API_KEY``, no cloud credential
    reaches the Ray processes, so none reaches tenants' code. ``pass_env`` adds names an operator
    allowed (``orion.ray_pass_env``). ``ha`` with GCS fault tolerance: the head starts under
    Orion's GCS supervisor, on Redis or RocksDB (``gcs_ha.py``)."""
    ensure_ray_token()
    if _port_open("127.0.0.1", ray_port):
        raise RuntimeError(
            f"port {ray_port} is in use: is another Ray cluster running here? "
            f"Use `orion up --address 127.0.0.1:{ray_port}` to attach to it."
        )
    cmd = [
        _ray_bin(),
        "start",
        "--head",
        "--block",
        f"--port={ray_port}",
        f"--dashboard-port={dashboard_port}",
        "--dashboard-host=127.0.0.1",
        "--include-dashboard=true",
        "--disable-usage-stats",
    ]
    # Ray's fixed default ports for the node's agents clash with any other Ray on the machine
    # (the Jobs API then answers "No available agent"): keep a default only while it is free.
    cmd.append(f"--dashboard-agent-listen-port={_port_or_free(52365)}")
    cmd.append(f"--ray-client-server-port={_port_or_free(10001)}")
    if num_cpus is not None:
        cmd.append(f"--num-cpus={num_cpus:g}")
    if num_gpus is not None:
        cmd.append(f"--num-gpus={num_gpus:g}")
    if resources:
        cmd.append(f"--resources={json.dumps(resources)}")
    log_path = orion_home() / "ray-head.log"
    private_dir(log_path.parent)
    plan = gcs_ha.prepare(ha, orion_home()) if ha is not None else None
    if plan is not None:
        cmd = plan.wrap(cmd)
    env = ray_process_env(
        os.environ,
        settings={"RAY_AUTH_MODE": "token", "ORION_HOME": str(orion_home()), **(plan.env if plan else {})},
        extra_names=pass_env,
        refused=refused_env,
    )
    try:
        return {
            **_start_head_process(cmd, env, log_path, ray_port, dashboard_port),
            **(plan.state if plan else {}),
        }
    except BaseException:
        if plan is not None:
            gcs_ha.stop_local_redis(plan.state)
        raise


def _start_head_process(
    cmd: list[str], env: dict, log_path: Path, ray_port: int, dashboard_port: int
) -> dict:
    """Run ``cmd`` in its own session, its output in ``log_path``; wait for the head's ports."""
    with open_private(log_path) as log_file:  # Ray's output may carry tenants' errors
        proc = subprocess.Popen(
            cmd,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
        )
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"`ray start --head` exited ({proc.returncode}); see {log_path}")
        if _port_open("127.0.0.1", ray_port) and _port_open("127.0.0.1", dashboard_port):
            break
        time.sleep(0.3)
    else:
        _kill_group(proc.pid)
        raise RuntimeError(f"Ray head did not come up within 120 s; see {log_path}")
    return {
        "started": True,
        "pid": proc.pid,
        "address": f"127.0.0.1:{ray_port}",
        "dashboard_url": f"http://127.0.0.1:{dashboard_port}",
    }


def _descendants(root: int) -> set[int]:
    """Every process below ``root`` (Ray's workers start their own sessions, so a process group
    does not cover them)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def _kill_group(pid: int, grace_s: float = 5.0) -> None:
    """Stop the Ray head Orion started: its process group and every process below it, by pid."""
    tree = _descendants(pid) | {pid}
    for p in [pid, *tree]:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.time() + grace_s
    while time.time() < deadline and any(_alive(p) for p in tree):
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.3)
    # a worker the raylet started during the grace (a proxy the Serve controller brought back)
    # is not in the first snapshot: its parent still runs, so it is found below it now
    tree |= {d for p in list(tree) if _alive(p) for d in _descendants(p)}
    for p in tree:
        if _alive(p):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
    deadline = time.time() + 10  # return only once they are gone
    while time.time() < deadline and any(_alive(p) for p in tree):
        time.sleep(0.1)


def _free_api_port(port: Optional[int], wait_s: float = 10.0) -> None:
    """After the head's processes are stopped, Orion's API port must be free: a process of the
    stopped head still listening there (a Serve proxy started while the head went down, or one
    whose parent died first and so was never below the head's pid) is stopped by its pid."""
    if not port:
        return
    from .pids import listening

    deadline = time.time() + wait_s
    while time.time() < deadline:
        holders = {p for p in listening(port) if _is_ray_process(p)}  # never another program
        if not holders:
            return
        for p in holders:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)


def _is_ray_process(pid: int) -> bool:
    """A Ray process: an actor's ``ray::<name>`` title, or Ray's own binaries and scripts (under
    a ``/ray/`` directory)."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return b"ray::" in cmd or b"/ray/" in cmd


def up(
    config: OrionConfig,
    address: Optional[str] = None,
    num_cpus: Optional[float] = None,
    num_gpus: Optional[float] = None,
    resources: Optional[dict] = None,
    ray_port: int = 6379,
    dashboard_port: int = 8265,
    wait_s: float = 180.0,
    say=print,
    config_path: Optional[str] = None,
) -> dict[str, Any]:
    """Start or attach, deploy the scheduler actor and the API; return once ``/health`` is 200."""
    tenant_key_hashes(config.orion.tenants)  # fail before starting anything if a key is missing
    if address is None:  # Orion's own head: token auth, always (this process talks to it too)
        ensure_ray_token()
        os.environ["RAY_AUTH_MODE"] = "token"
    else:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # Resolve paths here: the actor's environment (HOME, ORION_HOME) may differ from ours.
    config.orion.store.path = config.orion.store.resolved_path()
    # a newer Orion's store refused before starting; a PostgreSQL DSN moved into a private file
    prepare_store(config.orion.store, orion_home())
    state = _read_state()
    if address is None:
        if state.get("started") and _alive(state.get("pid")):
            if num_cpus is not None or num_gpus is not None or resources:
                say(
                    "note: Orion's Ray head is already running; --num-cpus/--num-gpus/--resources "
                    "apply only when it starts (run `orion down` first to change them)"
                )
        else:
            say("starting a local Ray head …")
            state = start_local_head(
                ray_port,
                dashboard_port,
                num_cpus,
                num_gpus,
                resources,
                pass_env=config.orion.ray_pass_env,
                refused_env=[t.api_key_env for t in config.orion.tenants if t.api_key_env],
                ha=config.orion.ha,
            )
            _write_state(state)
    else:
        state = {"started": False, "address": address, "dashboard_url": None}

    import ray
    from ray import serve

    from .api.serve_app import APP_NAME, build_api_app
    from .scheduler.actor import deploy_scheduler

    ctx = ray.init(
        address=state["address"], namespace=NAMESPACE, logging_level=logging.WARNING, log_to_driver=False
    )
    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    try:
        dashboard_url = state.get("dashboard_url") or (
            "http://" + ctx.dashboard_url if ctx.dashboard_url else None
        )
        state["dashboard_url"] = dashboard_url
        state["config_path"] = str(Path(config_path).resolve()) if config_path else None
        state["store_path"] = config.orion.store.path  # `orion down` ends the scheduler's lease there
        state["store_backend"] = config.orion.store.backend  # postgres: the DSN file's path, never the DSN
        state["store_dsn_file"] = config.orion.store.dsn_file
        api = config.orion.api
        state["api_port"] = api.port  # `orion down` of a head it started checks the port is free
        _write_state(state)
        url = f"http://{api.host}:{api.port}"
        creds = read_credentials()
        api_key = creds.get("api_key") or new_key()
        cred_path = write_credentials(url, api_key)
        # the control plane's credential: handed to each actor as an argument, never an env var
        token = load_or_create_token()

        host_executor(dashboard_url, local=state.get("started", False), wait_s=wait_s, say=say)
        scheduler = deploy_scheduler(config, dashboard_url, token)
        ray.get(scheduler.ensure_started.remote(), timeout=wait_s)
        # Tenants and key hashes (keys are read from this process's environment, hashed here).
        tenants = config.orion.tenants
        ray.get(
            scheduler.configure_tenants.remote(
                [t.model_dump(mode="json") for t in tenants],
                tenant_key_hashes(tenants),
                [hash_key(api_key)],
                "orion up",
                config.orion.policy.model_dump(mode="json"),
                control_token=token,
            ),
            timeout=60,
        )

        from .autoscaler.actor import deploy_autoscaler

        autoscaler = deploy_autoscaler(config, token)  # scaling, node release, GPU telemetry
        ray.get(autoscaler.ensure_started.remote(), timeout=wait_s)

        from .serving.actor import deploy_manager

        # model serving: deployments, releases, the serving GPU account, the default cache block
        deploy_manager(control_token=token, caching=config.orion.serving.caching.model_dump(mode="json"))

        apps = serve.status().applications
        if APP_NAME not in apps or apps[APP_NAME].status not in ("RUNNING", "DEPLOYING"):
            # the API's proxy on the head only: a proxy on every worker would keep idle nodes
            # from being released by the autoscaler
            serve.start(http_options={"host": api.host, "port": api.port}, proxy_location="HeadOnly")
            serve.run(
                build_api_app(
                    [hash_key(api_key)],
                    api.max_body_bytes,
                    config.orion.capacity.model_dump(mode="json"),
                    config.orion.worker_pools,
                    **api_store_options(config),
                    observability={  # spans and log format (docs/tracing.md); no secret in them
                        "tracing": config.orion.tracing.model_dump(mode="json"),
                        "logging": config.orion.logging.model_dump(mode="json"),
                    },
                    # the replica (pinned to the head) reads the token file there when this
                    # machine is the head, so the token is not in the app's arguments (Ray's KV,
                    # readable by workload code); only a head elsewhere gets the token itself
                    **(
                        {"control_token_home": str(token_path().parent)}
                        if token_path().exists() and (state.get("started") or _driver_on_head())
                        else {"control_token": token}
                    ),
                ),
                name=APP_NAME,
                route_prefix="/",
                blocking=False,
            )
        _wait_healthy(url, wait_s)
        if config.orion.backup.enabled:  # scheduled snapshots (docs/backups.md)
            from .backup.actor import deploy_backup

            ray.get(deploy_backup(config).ensure_started.remote(), timeout=wait_s)
    finally:
        ray.shutdown()
    from .backup import replica  # the continuous replica runs beside Ray, by its own pid

    replica.on_up(config, state, _alive, say)
    _write_state(state)
    info = {
        "api_url": url,
        "dashboard_url": dashboard_url,
        "credentials": str(cred_path),
        "ray_address": state["address"],
    }
    if address is None:
        info["ray_auth"] = f"token in {ray_token_path()}; Ray's own tools need `export RAY_AUTH_MODE=token`"
    return info


def host_executor(dashboard_url: Optional[str], *, local: bool, wait_s: float, say=print) -> None:
    """Start the Ray job that creates and owns ``orion-executor`` (``runtime.executor_host``),
    unless the executor already runs; wait until it answers. Without the Jobs API (no dashboard)
    the scheduler creates the executor itself, and every task workload then starts a fresh
    worker process: say so."""
    import ray

    from .runtime.executor_host import HOST_JOB_PREFIX, executor_exists

    if executor_exists(NAMESPACE):
        return
    if not dashboard_url:
        say("note: no Ray dashboard, so no Jobs API: task workloads will not reuse worker processes")
        return
    from ray.job_submission import JobSubmissionClient

    # a head this command started runs this interpreter's environment; a cluster attached to
    # has its own `python` with Orion installed
    python = shlex.quote(sys.executable) if local else "python"
    sid = f"{HOST_JOB_PREFIX}-{secrets.token_hex(4)}"
    client = JobSubmissionClient(dashboard_url)
    deadline = time.time() + min(wait_s, 90.0)
    while not _submit_host_job(client, sid, python):  # a new head may have no job agent yet
        if time.time() > deadline:
            say("note: could not start the executor's host job; task workloads will not reuse workers")
            return
        time.sleep(1.0)
    deadline = time.time() + wait_s
    while not executor_exists(NAMESPACE):
        if client.get_job_status(sid).is_terminal():
            logs = client.get_job_logs(sid)[-2000:]
            raise RuntimeError(f"the executor's host job {sid} ended before the executor started:\n{logs}")
        if time.time() > deadline:
            raise RuntimeError(f"the executor's host job {sid} did not start it within {wait_s:g}s")
        time.sleep(0.2)
    ray.get(ray.get_actor(EXECUTOR_NAME, namespace=NAMESPACE).has.remote("", 0), timeout=wait_s)


def _submit_host_job(client: Any, sid: str, python: str) -> bool:
    """Submit the host job as ``sid``; False when the Jobs API refused (e.g. "No available agent"
    right after the head started) and nothing was submitted."""
    try:
        client.submit_job(
            # the credential by file path (orion up's, 0600): the entrypoint is visible to job listers
            entrypoint=f"{python} -m orion_ray.runtime.executor_host --namespace {NAMESPACE}"
            + (f" --token-file {shlex.quote(str(token_path()))}" if token_path().exists() else ""),
            submission_id=sid,
            metadata={"orion": "executor-host"},
        )
        return True
    except Exception:
        try:  # an answer lost after the job was accepted: it exists
            client.get_job_info(sid)
            return True
        except Exception:
            return False


def _driver_on_head() -> bool:
    """Whether this process's Ray node is the cluster's head (``orion up --address`` run on the
    head machine): files written here are then on the node the API replica is pinned to."""
    import ray

    from .api.serve_app import HEAD_RESOURCE

    me = ray.get_runtime_context().get_node_id()
    return any(n.get("NodeID") == me and HEAD_RESOURCE in (n.get("Resources") or {}) for n in ray.nodes())


def api_store_options(config: OrionConfig) -> dict[str, Any]:
    """What the API replica needs to read and write the store itself (the path resolved)."""
    from .backup.service import default_dir

    return {
        "store": config.orion.store.model_dump(mode="json"),
        "max_queue_size": config.orion.scheduler.max_queue_size,
        "policy": config.orion.policy.model_dump(mode="json"),
        "actor_timeout_s": config.orion.api.actor_timeout_s,
        "rate_limit": config.orion.api.rate_limit.model_dump(mode="json"),
        "replicas": config.orion.api.replicas,
        # the directory resolved here, like the store's path (the replica's ORION_HOME may differ)
        "backup": {**config.orion.backup.model_dump(mode="json"), "dir": default_dir(config.orion.backup)},
    }


def config_path_in_use() -> Optional[str]:
    """The orion.yaml the running Orion was started with (None: defaults or ./orion.yaml)."""
    return _read_state().get("config_path")


def _wait_healthy(url: str, wait_s: float) -> None:
    deadline = time.time() + wait_s
    last = ""
    while time.time() < deadline:
        try:
            r = httpx.get(url + "/health", timeout=5)
            if r.status_code == 200:
                return
            last = r.text
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.5)
    raise RuntimeError(f"Orion did not answer healthy at {url}/health within {wait_s:g}s: {last}")


def down(say=print) -> bool:
    """Stop what ``orion up`` started: the API app, the actors, and a head Orion started."""
    state = _read_state()
    if not state:
        say("Orion is not running (no state in %s)" % _state_path())
        return False
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from .backup import replica

    replica.on_down(state, _alive)  # first: it syncs what it has while the store is still written
    if state.get("started"):
        if _alive(state.get("pid")):
            _kill_group(state["pid"])
        _free_api_port(state.get("api_port"))
        if gcs_ha.stop_local_redis(state):
            say("stopped the local Redis of the GCS")
        say("stopped Orion and its local Ray head")
    else:
        _stop_orion_on(state["address"])
        say(f"stopped Orion on {state['address']} (the cluster itself keeps running)")
    if state.get("store_path") or state.get("store_dsn_file"):  # its holder is stopped: the next
        try:  # scheduler need not wait it out
            release_recorded_lease(state)
        except Exception as exc:  # a busy or missing store: the next one waits the lease out
            say(f"note: the scheduler's lease was not released ({exc})")
    _state_path().unlink(missing_ok=True)
    return True


def _exit_gracefully(actor: Any, wait_s: float = 3.0) -> None:
    """Ask ``actor`` to leave through its exit handlers (``atexit``: the tracing provider's
    shutdown writes the spans it still buffers), waiting at most ``wait_s``; ``ray.kill``, which
    runs no handler, follows either way."""
    import ray

    try:
        ray.wait([actor.__ray_terminate__.remote()], timeout=wait_s)
    except Exception:  # gone already, or Ray refused: the kill that follows settles it
        pass


def _stop_orion_on(address: str) -> None:
    import ray
    from ray import serve

    from .api.serve_app import APP_NAME

    ray.init(address=address, namespace=NAMESPACE, logging_level=logging.WARNING)
    try:
        try:
            serve.delete(APP_NAME)
        except Exception:
            pass
        from .serving.manager import APP_PREFIX

        try:
            for name in [a for a in serve.status().applications if a.startswith(APP_PREFIX)]:
                serve.delete(name)  # the model versions Orion deployed
        except Exception:  # Serve not running: nothing of ours to delete
            pass
        try:
            from .serving.deployer import RayKv

            RayKv().clear()  # a later `orion up` on this cluster starts with no deployments
        except Exception:  # best effort, like the deletes above
            pass
        for name in (AUTOSCALER_NAME, SCHEDULER_NAME, EXECUTOR_NAME, SERVING_NAME, BACKUP_NAME):
            try:
                actor = ray.get_actor(name, namespace=NAMESPACE)
            except ValueError:
                continue
            if name == SCHEDULER_NAME:  # it makes spans: let its exit handlers write the last ones
                _exit_gracefully(actor)
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # it has already left
                pass
        try:  # Orion's capacity floor goes with it: the Ray autoscaler may shrink the cluster
            from ray.autoscaler.sdk import request_resources

            request_resources(bundles=[])
        except Exception:
            pass
    finally:
        ray.shutdown()
