"""``/admin/v1/capacity/reservations``: capacity reservations for a planned peak (admin).

The backend is any object with ``create(ReservationRequest)``, ``list()`` and ``release(id)`` —
``ReservationManager`` over a boto3 client, or ``CapacityService`` which adds ``status()``
(``GET /admin/v1/capacity/status``) from the EC2 provider.
Its calls block on the network, so the routes are plain functions (FastAPI runs them in a thread).
"""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path

from ..autoscaler.providers.reservations import RESERVATION_ID, ReservationRequest


def build_capacity_router(backend: Any) -> APIRouter:
    """The reservation routes over ``backend``; ``build_app`` mounts them behind the admin key."""
    router = APIRouter(prefix="/admin/v1/capacity", tags=["admin"])

    @router.get("/reservations")
    def list_reservations():
        """The cluster's capacity reservations with their free slots (admin)."""
        return {"items": [r.to_dict() for r in backend.list()]}

    @router.post("/reservations", status_code=201)
    def create_reservation(body: ReservationRequest):
        """Reserve ``count`` instances of a type in a zone, until ``end_date`` or released
        (admin)."""
        return backend.create(body).to_dict()

    @router.delete("/reservations/{reservation_id}")
    def release_reservation(reservation_id: str = Path(pattern=RESERVATION_ID)):
        """Release (cancel) a reservation; instances running in it keep running (admin)."""
        return backend.release(reservation_id)

    if hasattr(backend, "status"):
        @router.get("/status")
        def capacity_status():
            """Per pool: capacity sources in order, blocklisted zones with the seconds they have
            left, and the last failed launch with every attempt — why a pool is not growing."""
            return backend.status()

    return router
