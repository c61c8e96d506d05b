"""The capacity backend of the admin API: reservations, and the EC2 provider's view of its pools."""

from __future__ import annotations

from typing import Iterable, Optional, Union

from ..worker_pools import WorkerPool
from .providers.ec2 import EC2Provider
from .providers.reservations import ReservationManager, ReservationRequest
from .providers.sources import Reservation


class CapacityService:
    """``build_app(..., capacity_backend=CapacityService(reservations, provider))``."""

    def __init__(self, reservations: ReservationManager, provider: Optional[EC2Provider] = None):
        self.reservations = reservations
        self.provider = provider

    def create(self, request: ReservationRequest) -> Reservation:
        return self.reservations.create(request)

    def list(self) -> list[Reservation]:
        return self.reservations.list()

    def release(self, reservation_id: str) -> dict:
        return self.reservations.release(reservation_id)

    def status(self) -> dict:
        """Each pool's sources, blocklisted zones and last failed launch (with its history)."""
        return self.provider.status() if self.provider is not None else {"pools": {}}


class LazyCapacity:
    """A ``CapacityService`` built on first use from ``orion.capacity`` and the worker pools.

    The API app is pickled into its Serve replica; a boto3 client is not, so the client is made
    there, on the first capacity request.
    """

    def __init__(self, capacity: dict, pools: Iterable[Union[WorkerPool, dict]]):
        self.capacity = dict(capacity)
        # typed pools (orion.yaml's, validated at load); raw dicts are validated on first use
        self.pools = [p if isinstance(p, WorkerPool) else dict(p) for p in pools]
        self._svc: Optional[CapacityService] = None

    def _service(self) -> CapacityService:
        if self._svc is None:
            import boto3

            kw = {
                k: v
                for k, v in (
                    ("region_name", self.capacity.get("region")),
                    ("endpoint_url", self.capacity.get("endpoint_url")),
                )
                if v
            }
            ec2 = boto3.client("ec2", **kw)
            cluster = self.capacity.get("cluster") or "orion"
            provider = None
            ec2_pools = [p for p in self.pools if _field(p, "image_id") and _field(p, "subnets")]
            if ec2_pools:
                provider = EC2Provider(ec2_client=ec2, pools=ec2_pools, cluster=cluster)
            self._svc = CapacityService(ReservationManager(ec2, cluster), provider)
        return self._svc

    def create(self, request: ReservationRequest) -> Reservation:
        return self._service().create(request)

    def list(self) -> list[Reservation]:
        return self._service().list()

    def release(self, reservation_id: str) -> dict:
        return self._service().release(reservation_id)

    def status(self) -> dict:
        return self._service().status()


def _field(pool: Union[WorkerPool, dict], name: str):
    return getattr(pool, name) if isinstance(pool, WorkerPool) else pool.get(name)


def capacity_backend(capacity: dict, pools: Iterable[Union[WorkerPool, dict]]) -> Optional[LazyCapacity]:
    """The API's capacity backend for ``orion.capacity`` (None when Orion manages none)."""
    return LazyCapacity(capacity, pools) if capacity.get("provider") == "ec2" else None
