"""A spot notice (fed, as EC2's two-minute warning would be) drains the node through Orion's drain:
the work there keeps running until just before the reclaim, then goes back to the queue."""

import asyncio
import datetime as dt

from orion_ray.autoscaler.providers.spot import FedNoticeSource, InterruptionNotice, SpotInterruptionWatcher
from orion_ray.autoscaler.spot_watch import STOP_MARGIN_S, orion_drain
from orion_ray.scheduler import Scheduler, node_ops
from orion_ray.status import Status
from orion_ray.store import SQLiteStore

from .test_node_lifecycle import NodesRuntime, node, running

T0 = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.timezone.utc)


class SyncScheduler:
    """The scheduler called the way the watcher's thread calls the actor (blocking)."""

    def __init__(self, sched, loop):
        self.sched, self.loop = sched, loop

    def drain(self, node_id, who, deadline_s, reason):
        return self.loop.run_until_complete(self.sched.drain(node_id, who, deadline_s, reason))


def test_a_fed_spot_notice_drains_the_ray_node_with_the_time_left(tmp_path):
    store = SQLiteStore(str(tmp_path / "orion.db"))
    loop = asyncio.new_event_loop()
    try:
        sched = Scheduler(store, NodesRuntime([node("spot-1", pool="gpu-spot"), node("n2")]))
        sched.clock = lambda: T0.timestamp()
        w = running(sched, "w1", "spot-1")
        node_ops.check_nodes(sched)
        source = FedNoticeSource()
        watcher = SpotInterruptionWatcher(
            source, orion_drain(SyncScheduler(sched, loop), "spot-1", now=lambda: T0), now=lambda: T0
        )
        source.feed(InterruptionNotice("i-0abc", "terminate", T0 + dt.timedelta(minutes=2)))
        assert watcher.poll_once() is not None
        rec = sched.nodebook.get("spot-1")
        assert rec.status == "draining"
        assert rec.drain_deadline == T0.timestamp() + 120 - STOP_MARGIN_S
        assert "spot interruption notice for i-0abc" in rec.cordon_reason
        assert w.status == Status.RUNNING  # it may still finish in the time left
        assert [n.node_id for n in sched.schedulable_nodes()] == ["n2"]  # nothing new lands there
        sched.clock = lambda: T0.timestamp() + 101

        async def past_deadline():
            node_ops.check_nodes(sched)
            assert w.status == Status.PREEMPTED
            await asyncio.sleep(0.05)

        loop.run_until_complete(past_deadline())
        assert w.status == Status.QUEUED and w.attempt == 2  # back to the queue, not lost
        source.feed(InterruptionNotice("i-0abc", "terminate", T0 + dt.timedelta(minutes=2)))
        assert watcher.poll_once() is None  # the repeated notice drains once
        events = store.scaling_events(kind="node")
        assert any(e["trigger"] == "spot-interruption" and e["outcome"] == "draining" for e in events)
    finally:
        loop.close()
        store.close()
