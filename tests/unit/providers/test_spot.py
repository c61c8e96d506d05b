"""Spot interruption notices → drain: a fed notice, and the metadata service's notice read over
HTTP from a local stand-in of the metadata service on 127.0.0.1."""

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from orion_ray.autoscaler.providers.spot import (
    FedNoticeSource,
    IMDSNoticeSource,
    InterruptionNotice,
    SpotInterruptionWatcher,
    parse_instance_action,
)

T0 = dt.datetime(2026, 11, 25, 17, 0, tzinfo=dt.timezone.utc)


def test_fed_notice_drains_the_node_once():
    source = FedNoticeSource()
    drained = []
    w = SpotInterruptionWatcher(
        source, lambda node, deadline: drained.append((node, deadline)), now=lambda: T0
    )
    assert w.poll_once() is None and drained == []
    notice = InterruptionNotice("i-0abc", "terminate", T0 + dt.timedelta(minutes=2))
    source.feed(notice)
    source.feed(notice)  # repeated, as the metadata service repeats it
    assert w.poll_once() == notice
    assert w.poll_once() is None
    assert drained == [("i-0abc", T0 + dt.timedelta(minutes=2))]


def test_failed_drain_is_tried_again():
    source = FedNoticeSource()
    calls = []

    def drain(node, deadline):
        calls.append(node)
        if len(calls) == 1:
            raise RuntimeError("autoscaler busy")

    w = SpotInterruptionWatcher(source, drain, now=lambda: T0)
    n = InterruptionNotice("i-1", "terminate", T0 + dt.timedelta(minutes=2))
    source.feed(n)
    with pytest.raises(RuntimeError):
        w.poll_once()
    source.feed(n)
    assert w.poll_once() == n and calls == ["i-1", "i-1"]


def test_run_loop_stops_by_event_and_survives_errors():
    class Flaky:
        def __init__(self):
            self.n = 0

        def poll(self):
            self.n += 1
            if self.n == 1:
                raise OSError("metadata service unreachable")
            if self.n == 2:
                return InterruptionNotice("i-2", "stop", T0)
            stop.set()
            return None

    stop = threading.Event()
    drained = []
    SpotInterruptionWatcher(Flaky(), lambda n, d: drained.append(n)).run(stop, interval_s=0)
    assert drained == ["i-2"]


def test_parse_instance_action():
    n = parse_instance_action('{"action": "hibernate", "time": "2026-11-25T17:02:00Z"}', "i-3")
    assert n == InterruptionNotice("i-3", "hibernate", T0 + dt.timedelta(minutes=2))


class FakeIMDS(BaseHTTPRequestHandler):
    notice = None
    seen_tokens = []

    def log_message(self, *args):
        pass

    def _send(self, code, body=""):
        self.send_response(code)
        self.end_headers()
        self.wfile.write(body.encode())

    def do_PUT(self):
        if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            return self._send(200, "tok-1")
        self._send(400)

    def do_GET(self):
        token = self.headers.get("X-aws-ec2-metadata-token")
        FakeIMDS.seen_tokens.append(token)
        if token != "tok-1":
            return self._send(401)
        if self.path == "/latest/meta-data/instance-id":
            return self._send(200, "i-0123456789abcdef0")
        if self.path == "/latest/meta-data/spot/instance-action":
            return self._send(404) if FakeIMDS.notice is None else self._send(200, FakeIMDS.notice)
        self._send(404)


@pytest.fixture
def imds():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeIMDS)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeIMDS.notice, FakeIMDS.seen_tokens = None, []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_imds_source_reads_the_two_minute_warning(imds):
    source = IMDSNoticeSource(base_url=imds)
    drained = []
    w = SpotInterruptionWatcher(source, lambda n, d: drained.append((n, d)), now=lambda: T0)
    try:
        assert w.poll_once() is None  # 404: no notice yet
        FakeIMDS.notice = json.dumps({"action": "terminate", "time": "2026-11-25T17:02:00Z"})
        w.poll_once()
        w.poll_once()
    finally:
        source.close()
    assert drained == [("i-0123456789abcdef0", T0 + dt.timedelta(minutes=2))]
    assert set(FakeIMDS.seen_tokens) == {"tok-1"}  # IMDSv2: every read carries the token
