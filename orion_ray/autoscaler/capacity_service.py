"""The capacity backend of the admin API: reservations, and the EC2 provider's view of its pools."""
from __future__ import annotations

from typing import Optional

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
