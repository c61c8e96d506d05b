"""A real Prometheus and Alertmanager on free loopback ports, with everything they talk to run by
the test: Orion's metrics text served from an ``OrionMetrics`` the test drives, and local
PagerDuty, Slack and webhook receivers (one HTTP server) and an SMTP sink (aiosmtpd).

The rules are the shipped ones rendered with only ``for:`` shortened to 2 s (and a 1 s evaluation
interval); the Alertmanager configuration is ``alertmanager_config`` with the receivers' addresses
pointed here and group timings of a second. Both servers are stopped by their pid."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Optional

import httpx
import yaml

from orion_ray.alerting.alertmanager import AlertingSettings, Timing, alertmanager_config
from orion_ray.alerting.rules import render_rules
from orion_ray.metrics import OrionMetrics
from tests.alerting_tools import require_tool
from tests.live_orion import free_port

FOR = "2s"
ROUTING_KEY = "test-routing-key-0123"
WEBHOOK_TOKEN = "test-webhook-token"


class Scraped:
    """Orion's metrics as Prometheus scrapes them, plus the cost module's gauge. While ``failing``
    each scrape adds 5xx answers and slow requests, so the rates keep the condition true."""

    def __init__(self) -> None:
        self.metrics = OrionMetrics(ray_mirror=False)
        self.failing = False
        self.cost_ratio: dict[str, float] = {}
        self.lock = threading.Lock()

    def render(self) -> str:
        with self.lock:
            if self.failing:
                for _ in range(10):
                    self.metrics.api_request("/api/v1/workloads", "POST", 500, 0.01)
                    self.metrics.api_request("/api/v1/workloads", "POST", 202, 0.01)
                    self.metrics.api_request("/api/v1/workloads/{workload_id}", "GET", 200, 2.0)
            text = self.metrics.render()
            if self.cost_ratio:
                text += "# TYPE orion_cost_ratio_to_baseline gauge\n" + "".join(
                    f'orion_cost_ratio_to_baseline{{tenant="{t}"}} {v}\n' for t, v in self.cost_ratio.items()
                )
            return text


@dataclass
class Received:
    """What the local receivers got: JSON bodies by path (with their headers), mails."""

    http: dict[str, list[tuple[dict, dict]]] = field(default_factory=dict)
    mails: list[Any] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def posts(self, path: str) -> list[tuple[dict, dict]]:
        with self.lock:
            return list(self.http.get(path, []))


def _http_server(handler_fn: Callable[[Any], tuple[int, str, bytes]]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            status, ctype, body = handler_fn(self)
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: Any) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready in {timeout}s: {log.read_text()[-2000:]}")


class Stack:
    """Started by ``start``, stopped by ``stop`` (by pid)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.scraped = Scraped()
        self.received = Received()
        self.procs: list[subprocess.Popen] = []
        self.servers: list[Any] = []
        self.am_url = self.prom_url = ""

    # -- the pieces the servers talk to ---------------------------------------------------------
    def _receivers(self) -> str:
        def handle(req: BaseHTTPRequestHandler) -> tuple[int, str, bytes]:
            if req.command == "GET" and req.path == "/metrics":
                return 200, "text/plain; version=0.0.4", self.scraped.render().encode()
            body = req.rfile.read(int(req.headers.get("Content-Length") or 0))
            with self.received.lock:
                self.received.http.setdefault(req.path, []).append(
                    (json.loads(body or b"{}"), dict(req.headers))
                )
            # PagerDuty's Events API answers 202, Slack's webhook 200 "ok"
            return (202 if req.path == "/pagerduty" else 200), "text/plain", b"ok"

        server = _http_server(handle)
        self.servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    def _smtp(self) -> int:
        from aiosmtpd.controller import Controller

        received = self.received

        class Sink:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                with received.lock:
                    received.mails.append(message_from_bytes(envelope.content))
                return "250 OK"

        port = free_port()
        controller = Controller(Sink(), hostname="127.0.0.1", port=port)
        controller.start()
        self.servers.append(controller)
        return port

    # -- the servers -------------------------------------------------------------------------------
    def start(self) -> "Stack":
        base = self._receivers()
        smtp_port = self._smtp()
        secrets = self.root / "secrets"
        secrets.mkdir(mode=0o700)
        for name, value in (
            ("pagerduty_routing_key", ROUTING_KEY),
            ("slack_webhook_url", f"{base}/slack"),
            ("webhook_token", WEBHOOK_TOKEN),
        ):
            (secrets / name).write_text(value)
        settings = AlertingSettings.model_validate(
            {
                "pagerduty": {
                    "routing_key_file": str(secrets / "pagerduty_routing_key"),
                    "url": f"{base}/pagerduty",
                },
                "slack": {"api_url_file": str(secrets / "slack_webhook_url"), "channel": "#test"},
                "email": {
                    "to": "oncall@test.invalid",
                    "from": "am@test.invalid",
                    "smarthost": f"127.0.0.1:{smtp_port}",
                    "require_tls": False,
                },
                "webhook": {"url": f"{base}/webhook", "bearer_token_file": str(secrets / "webhook_token")},
                "timing": Timing(group_wait="1s", group_interval="1s", repeat_interval="1h"),
            }
        )
        am_yml = self.root / "alertmanager.yml"
        am_yml.write_text(yaml.safe_dump(alertmanager_config(settings), sort_keys=False))
        am_port = free_port()
        self.am_url = f"http://127.0.0.1:{am_port}"
        am_log = self.root / "alertmanager.log"
        self.procs.append(
            subprocess.Popen(
                [
                    require_tool("alertmanager"),
                    f"--config.file={am_yml}",
                    f"--storage.path={self.root / 'am-data'}",
                    f"--web.listen-address=127.0.0.1:{am_port}",
                    "--cluster.listen-address=",  # no gossip port (it defaults to 0.0.0.0:9094)
                ],
                stdout=am_log.open("w"),
                stderr=subprocess.STDOUT,
            )
        )
        _wait_ready(f"{self.am_url}/-/ready", self.procs[-1], am_log)

        rules = self.root / "rules.yml"
        rules.write_text(render_rules(for_override=lambda _: FOR, interval="1s"))
        prom_yml = self.root / "prometheus.yml"
        prom_yml.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(rules)],
                    "alerting": {
                        "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]
                    },
                    "scrape_configs": [
                        {"job_name": "orion", "static_configs": [{"targets": [base.removeprefix("http://")]}]}
                    ],
                }
            )
        )
        prom_port = free_port()
        self.prom_url = f"http://127.0.0.1:{prom_port}"
        prom_log = self.root / "prometheus.log"
        self.procs.append(
            subprocess.Popen(
                [
                    require_tool("prometheus"),
                    f"--config.file={prom_yml}",
                    f"--storage.tsdb.path={self.root / 'prom-data'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                ],
                stdout=prom_log.open("w"),
                stderr=subprocess.STDOUT,
            )
        )
        _wait_ready(f"{self.prom_url}/-/ready", self.procs[-1], prom_log)
        return self

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for server in self.servers:
            if isinstance(server, ThreadingHTTPServer):
                server.shutdown()
                server.server_close()
            else:
                server.stop()

    # -- helpers for the tests -------------------------------------------------------------------
    def am_alerts(self) -> list[dict]:
        return httpx.get(f"{self.am_url}/api/v2/alerts", timeout=5).json()


def wait_for(what: str, check: Callable[[], Optional[Any]], timeout: float = 45) -> Any:
    """Poll ``check`` until it answers something truthy (no timing is asserted: ``timeout`` only
    bounds a broken run)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")
