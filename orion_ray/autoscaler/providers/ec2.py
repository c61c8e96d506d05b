"""``EC2Provider``: launch a gang of instances for a pool, all or nothing, from the pool's capacity
sources in order, hopping zones on capacity errors; terminate them.

One ``launch`` is one pass over the pool's sources and zones. Retrying passes over time (backoff,
blocklist expiry, the pool's budget) is the autoscaler's job: ``launcher.launch_with_retries``.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional, Sequence, Union

from ...errors import CapacityError, ConfigError, NotFound, ValidationError
from .identity import (
    METADATA_OPTIONS,
    TAG_CLUSTER,
    TAG_LAUNCH_ID,
    TAG_POOL,
    instance_tags,
    ray_start_user_data,
    tag_specifications,
)
from .pools import PoolConfig, parse_pool, parse_pools
from .reservations import ReservationManager
from .retry import Blocklist, LaunchBudget, backoff_delay
from .sources import RESERVATION, SPOT, Attempt, Reservation, plan_attempts, source_order, split_blocked
from .taxonomy import ErrorKind, InvalidLaunch, LaunchBudgetExceeded, QuotaExceeded, classify, error_code

log = logging.getLogger("orion.autoscaler.ec2")

LIVE_STATES = ["pending", "running", "stopping", "stopped"]
TERMINATE_BATCH = 1000  # EC2 takes at most 1,000 ids per TerminateInstances


@dataclass
class LaunchResult:
    """A gang that came up whole."""

    launch_id: str
    pool: str
    instance_ids: list[str]
    source: str
    zone: str
    reservation_id: Optional[str] = None
    history: list[dict] = field(default_factory=list)


def _is_cloud_error(exc: BaseException) -> bool:
    """A botocore client or transport error (not a bug in Orion)."""
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # pragma: no cover - boto3 is required to have a client at all
        return False
    return isinstance(exc, (ClientError, BotoCoreError))


class EC2Provider:
    """Orion's EC2 capacity logic over a boto3 EC2 client (passed in, so it can point anywhere).

    ``pools`` are ``orion.yaml`` ``worker_pools`` entries: dicts or ``WorkerPool``s (validated
    here as EC2 pools), or ``PoolConfig`` (``Ec2Pool``).
    ``clock``, ``sleep`` and ``rand`` are injectable so backoff and budgets are tested without
    waiting.
    """

    def __init__(
        self,
        ec2_client: Any,
        pools: Iterable[Union[dict, PoolConfig]] = (),
        cluster: str = "orion",
        reservations: Optional[ReservationManager] = None,
        blocklist_ttl_s: float = 300.0,
        transient_retries: int = 4,
        backoff_base_s: float = 1.0,
        backoff_cap_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
    ):
        self.ec2 = ec2_client
        self.cluster = cluster
        raw = list(pools)
        if all(isinstance(p, PoolConfig) for p in raw):
            self.pools = {p.name: p for p in raw}
        else:  # parse_pools takes a WorkerPool too, and checks its launch fields
            self.pools = parse_pools(raw)
        self.reservations = reservations or ReservationManager(ec2_client, cluster)
        self.blocklist = Blocklist(blocklist_ttl_s, clock)
        self.transient_retries = transient_retries
        self.backoff_base_s, self.backoff_cap_s = backoff_base_s, backoff_cap_s
        self.clock, self.sleep, self.rand = clock, sleep, rand
        self._subnet_zone: dict[str, str] = {}
        # The last failed launch of each pool (cleared by a success): what `status()` reports, so
        # an operator or the queue's explain can say why a pool is not growing.
        self.last_failure: dict[str, dict] = {}

    # -- pools ----------------------------------------------------------------------------------
    def pool(self, name: str) -> PoolConfig:
        """The pool called ``name`` (``NotFound`` when there is none)."""
        try:
            return self.pools[name]
        except KeyError:
            raise NotFound(f"no worker pool {name!r}; known: {sorted(self.pools)}") from None

    def add_pool(self, raw: Union[dict, PoolConfig]) -> PoolConfig:
        """Add or replace one pool (the Ray plugin makes pools of node types as it meets them)."""
        pool = raw if isinstance(raw, PoolConfig) else parse_pool(raw)
        self.pools[pool.name] = pool
        return pool

    def subnet_zones(self, pool: PoolConfig) -> dict[str, str]:
        """``{subnet: zone}`` of the pool's subnets (looked up once, then cached)."""
        missing = [s for s in pool.subnets if s not in self._subnet_zone]
        if missing:
            try:
                subnets = self.ec2.describe_subnets(SubnetIds=missing)["Subnets"]
            except Exception as exc:
                if not _is_cloud_error(exc):
                    raise
                code, _, message = error_code(exc)
                raise ConfigError(
                    f"pool {pool.name!r}: cannot look up its subnets: {code}",
                    [{"field": f"worker_pools.{pool.name}.subnets", "problem": f"{code}: {message}"}],
                ) from None
            for s in subnets:
                self._subnet_zone[s["SubnetId"]] = s["AvailabilityZone"]
        return {s: self._subnet_zone[s] for s in pool.subnets if s in self._subnet_zone}

    def reservations_for(self, pool: PoolConfig, history: list[dict]) -> list[Reservation]:
        """The pool's reservations as EC2 sees them now; only pools that list some ask EC2.

        A failed look-up is recorded and the launch goes on without reservations: on-demand or spot
        capacity is better than none."""
        if not pool.capacity_reservations:
            return []
        try:
            return self.reservations.list(pool.capacity_reservations)
        except Exception as exc:
            history.append(
                {
                    "source": RESERVATION,
                    "outcome": "lookup_failed",
                    "error": getattr(exc, "code", type(exc).__name__),
                    "message": str(exc)[:300],
                }
            )
            return []

    # -- launch ---------------------------------------------------------------------------------
    def launch(
        self,
        pool_name: str,
        count: int,
        budget: Optional[LaunchBudget] = None,
        extra_tags: Optional[dict[str, str]] = None,
        launch_id: Optional[str] = None,
    ) -> LaunchResult:
        """Start ``count`` instances of the pool, all in one zone from one source, or none.

        Raises ``CapacityError`` (``QuotaExceeded``, ``LaunchBudgetExceeded``, ``InvalidLaunch``)
        with the ``history`` of every attempt. Whatever this call started and did not hand back is
        terminated before it returns or raises."""
        pool = self.pool(pool_name)
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= pool.max_size:
            raise ValidationError(
                f"count must be 1..{pool.max_size} for pool {pool.name!r}",
                [{"field": "count", "problem": f"got {count!r}"}],
            )
        budget = budget or LaunchBudget(pool.launch_budget_s, self.clock)
        launch_id = launch_id or f"ol-{uuid.uuid4().hex[:16]}"
        history: list[dict] = []
        handed_back = False
        try:
            result = self._one_pass(pool, count, budget, launch_id, history, extra_tags or {})
            handed_back = True
            self.last_failure.pop(pool.name, None)
            if any(h.get("kind") == ErrorKind.TRANSIENT.value for h in history):
                # An unanswered or 5xx call may have launched instances after all: keep only the
                # gang handed back. (An instance too new for DescribeInstances' eventual
                # consistency could slip through here; its launch-id tag lets `abandon` find it.)
                self._clean_up(launch_id, history, keep=set(result.instance_ids))
            return result
        except CapacityError as exc:
            self._clean_up(launch_id, history)
            handed_back = True  # cleaned up already
            exc.history = list(history)  # with the clean-up in it
            self.last_failure[pool.name] = {
                "code": exc.code,
                "message": exc.message,
                "count": count,
                "launch_id": launch_id,
                "retry_after": exc.retry_after,
                "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "history": exc.history[-50:],
            }
            raise
        finally:
            if not handed_back:
                # Covers every exit: a capacity error, a lost response whose instances do exist,
                # a bug, an interrupt. Nothing started by this launch may outlive it.
                self._clean_up(launch_id, history)

    def _one_pass(
        self,
        pool: PoolConfig,
        count: int,
        budget: LaunchBudget,
        launch_id: str,
        history: list[dict],
        extra_tags: dict[str, str],
    ) -> LaunchResult:
        if budget.expired():
            raise self._budget_error(pool, budget, history)
        zones = self.subnet_zones(pool)
        if not zones:
            raise ConfigError(
                f"pool {pool.name!r}: none of its subnets exists",
                [
                    {
                        "field": f"worker_pools.{pool.name}.subnets",
                        "problem": "not found in this region/account",
                    }
                ],
            )
        reservations = self.reservations_for(pool, history)
        attempts = plan_attempts(pool, zones, reservations, count)
        to_try, skipped = split_blocked(attempts, pool.instance_type, self.blocklist.blocked_until)
        now = self.clock()
        for a, until in skipped:
            history.append(
                {
                    **a.describe(),
                    "outcome": "skipped",
                    "reason": "blocklisted",
                    "blocked_for_s": round(until - now, 3),
                }
            )
        exhausted_quota: set[str] = set()
        for index, a in enumerate(to_try):
            if a.quota_bucket in exhausted_quota:
                history.append(
                    {**a.describe(), "outcome": "skipped", "reason": f"{a.quota_bucket} quota exceeded"}
                )
                continue
            if budget.expired():
                raise self._budget_error(pool, budget, history)
            outcome = self._attempt(
                pool, a, count, budget, f"{launch_id}-{index}", launch_id, history, extra_tags
            )
            if isinstance(outcome, LaunchResult):
                return outcome
            if outcome is ErrorKind.CAPACITY:
                self.blocklist.add(a.blocklist_key(pool.instance_type))
            elif outcome is ErrorKind.QUOTA:
                exhausted_quota.add(a.quota_bucket)  # no other zone has another quota
            elif outcome is ErrorKind.INVALID:
                raise InvalidLaunch(
                    f"EC2 refused the launch of pool {pool.name!r}: {history[-1].get('error')}",
                    self._details(history),
                    history=history,
                )
            # TRANSIENT here means its retries ran out: try the next zone.
        return self._fail(pool, count, history, exhausted_quota)

    def _run_kwargs(self, pool: PoolConfig, a: Attempt, count: int, token: str, tags: dict[str, str]) -> dict:
        kw: dict[str, Any] = dict(
            ImageId=pool.image_id,
            InstanceType=pool.instance_type,
            MinCount=count,
            MaxCount=count,  # a gang comes up whole or not at all
            SubnetId=a.subnet_id,
            ClientToken=token[:64],  # a retried call cannot launch twice
            TagSpecifications=tag_specifications(tags),
            MetadataOptions=dict(METADATA_OPTIONS),
        )
        if a.source == SPOT:
            spot: dict[str, Any] = {
                "SpotInstanceType": "one-time",
                "InstanceInterruptionBehavior": "terminate",
            }
            if pool.max_spot_price is not None:
                spot["MaxPrice"] = f"{pool.max_spot_price:.4f}"
            kw["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": spot}
        elif a.source == RESERVATION:
            kw["CapacityReservationSpecification"] = {
                "CapacityReservationTarget": {"CapacityReservationId": a.reservation_id}
            }
        if pool.key_name:
            kw["KeyName"] = pool.key_name
        if pool.security_group_ids:
            kw["SecurityGroupIds"] = list(pool.security_group_ids)
        if pool.iam_instance_profile:
            kw["IamInstanceProfile"] = {"Arn": pool.iam_instance_profile}
        user_data = ray_start_user_data(pool)
        if user_data:
            kw["UserData"] = user_data
        return kw

    def _attempt(
        self,
        pool: PoolConfig,
        a: Attempt,
        count: int,
        budget: LaunchBudget,
        token: str,
        launch_id: str,
        history: list[dict],
        extra_tags: dict[str, str],
    ) -> Union[LaunchResult, ErrorKind]:
        """One zone of one source: ``RunInstances``, retried on throttling/5xx only."""
        tags = instance_tags(self.cluster, pool, launch_id, a.source, a.reservation_id, extra_tags)
        kw = self._run_kwargs(pool, a, count, token, tags)
        for n in range(1, self.transient_retries + 2):
            entry = {**a.describe(), "try": n, "at_s": round(budget.elapsed(), 3)}
            try:
                response = self.ec2.run_instances(**kw)
            except Exception as exc:
                if not _is_cloud_error(exc):
                    raise
                code, status, message = error_code(exc)
                # A transport error (no answer) may hide a launch that happened: retrying with the
                # same ClientToken finds it again, and the final clean-up terminates it otherwise.
                kind = classify(code, status) if hasattr(exc, "response") else ErrorKind.TRANSIENT
                history.append(
                    {**entry, "outcome": "error", "error": code, "kind": kind.value, "message": message[:300]}
                )
                if kind is ErrorKind.TRANSIENT and n <= self.transient_retries:
                    delay = backoff_delay(n, self.backoff_base_s, self.backoff_cap_s, self.rand)
                    if not budget.allows_wait(delay):
                        raise self._budget_error(pool, budget, history) from None
                    history[-1]["retry_in_s"] = round(delay, 3)
                    self.sleep(delay)
                    continue
                return kind
            ids = [i["InstanceId"] for i in response.get("Instances", [])]
            if len(ids) != count:
                # MinCount=MaxCount makes this impossible on EC2; if it ever happens, undo it.
                self.terminate(ids)
                history.append(
                    {**entry, "outcome": "partial", "instances": len(ids), "kind": ErrorKind.CAPACITY.value}
                )
                return ErrorKind.CAPACITY
            history.append({**entry, "outcome": "launched", "instances": len(ids)})
            log.info(
                "launch %s: %d x %s from %s in %s", launch_id, count, pool.instance_type, a.source, a.zone
            )
            return LaunchResult(launch_id, pool.name, ids, a.source, a.zone, a.reservation_id, history)
        raise AssertionError("unreachable")

    def _details(self, history: list[dict]) -> list[dict]:
        return [
            {
                "field": f"{h.get('source')}/{h.get('zone', '-')}",
                "problem": h.get("error") or h.get("reason") or h.get("outcome", ""),
            }
            for h in history
            if h.get("outcome") != "launched"
        ]

    def _retry_after(self) -> Optional[float]:
        """When the first blocklisted zone expires: the earliest a new pass can do better."""
        left = list(self.blocklist.snapshot().values())
        return max(1.0, min(left)) if left else None

    def _budget_error(
        self, pool: PoolConfig, budget: LaunchBudget, history: list[dict]
    ) -> LaunchBudgetExceeded:
        return LaunchBudgetExceeded(
            f"pool {pool.name!r}: launch budget of {pool.launch_budget_s:g}s spent "
            f"({budget.elapsed():.0f}s, {len(history)} attempts)",
            self._details(history),
            retry_after=self._retry_after(),
            history=history,
        )

    def _fail(
        self, pool: PoolConfig, count: int, history: list[dict], exhausted_quota: set[str]
    ) -> LaunchResult:
        tried = sum(1 for h in history if h.get("outcome") == "error")
        if exhausted_quota:
            raise QuotaExceeded(
                f"pool {pool.name!r}: account quota reached for {sorted(exhausted_quota)} "
                f"launching {count} x {pool.instance_type}",
                self._details(history),
                history=history,
            )
        raise CapacityError(
            f"pool {pool.name!r}: no capacity for {count} x {pool.instance_type} in any source or "
            f"zone ({tried} failed calls)",
            self._details(history),
            retry_after=self._retry_after(),
            history=history,
        )

    def status(self) -> dict:
        """Each pool's sources in order, its blocklisted zones and its last failed launch."""
        blocked = self.blocklist.snapshot()
        out = {}
        for name, pool in sorted(self.pools.items()):
            mine = []
            for key, left in blocked.items():
                if key[0] == RESERVATION and key[1] in pool.capacity_reservations:
                    mine.append(
                        {"source": RESERVATION, "reservation_id": key[1], "seconds_left": round(left, 1)}
                    )
                elif key[0] != RESERVATION and key[1] == pool.instance_type:
                    mine.append({"source": key[0], "zone": key[2], "seconds_left": round(left, 1)})
            out[name] = {
                "instance_type": pool.instance_type,
                "sources": source_order(pool),
                "launch_budget_s": pool.launch_budget_s,
                "blocked": mine,
                "last_failure": self.last_failure.get(name),
            }
        return {"pools": out}

    # -- clean-up and terminate -----------------------------------------------------------------
    def instances(
        self,
        pool: Optional[str] = None,
        launch_id: Optional[str] = None,
        states: Sequence[str] = tuple(LIVE_STATES),
        tag_filters: Optional[dict[str, str]] = None,
    ) -> list[dict]:
        """This cluster's instances (EC2's dicts), filtered by pool, launch, state and tags."""
        filters = [
            {"Name": f"tag:{TAG_CLUSTER}", "Values": [self.cluster]},
            {"Name": "instance-state-name", "Values": list(states)},
        ]
        if pool:
            filters.append({"Name": f"tag:{TAG_POOL}", "Values": [pool]})
        if launch_id:
            filters.append({"Name": f"tag:{TAG_LAUNCH_ID}", "Values": [launch_id]})
        for k, v in (tag_filters or {}).items():
            filters.append({"Name": f"tag:{k}", "Values": [v]})
        out: list[dict] = []
        kw: dict[str, Any] = {"Filters": filters}
        while True:
            page = self.ec2.describe_instances(**kw)
            for r in page.get("Reservations", []):
                out.extend(r.get("Instances", []))
            if not page.get("NextToken"):
                return out
            kw["NextToken"] = page["NextToken"]

    def _clean_up(self, launch_id: str, history: list[dict], keep: frozenset = frozenset()) -> None:
        try:
            ids = [
                i["InstanceId"] for i in self.instances(launch_id=launch_id) if i["InstanceId"] not in keep
            ]
            if ids:
                log.warning(
                    "launch %s: terminating %d instances it started and does not hand back",
                    launch_id,
                    len(ids),
                )
                self.terminate(ids)
                history.append({"outcome": "cleaned_up", "terminated": ids})
        except Exception as exc:  # reported, never raised over the launch's own error
            log.error("launch %s: clean-up failed: %s", launch_id, exc)
            history.append({"outcome": "clean_up_failed", "message": str(exc)[:300]})

    def abandon(self, launch_id: str) -> list[str]:
        """Terminate every instance of a launch the caller gave up on (e.g. Ray never joined)."""
        ids = [i["InstanceId"] for i in self.instances(launch_id=launch_id)]
        self.terminate(ids)
        return ids

    def terminate(self, instance_ids: Iterable[str]) -> list[str]:
        """Terminate instances (in batches of 1,000); returns the ids asked for."""
        ids = list(dict.fromkeys(instance_ids))
        for i in range(0, len(ids), TERMINATE_BATCH):
            self.ec2.terminate_instances(InstanceIds=ids[i : i + TERMINATE_BATCH])
        return ids
