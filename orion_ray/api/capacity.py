"""``/admin/v1/capacity/reservations``: capacity reservations for a planned peak (admin).

The backend is any object with ``create(ReservationRequest)``, ``list()`` and ``release(id)`` —
``ReservationManager`` over a boto3 client, or ``CapacityService`` which adds ``status()``
(``GET /admin/v1/capacity/status``) from the EC2 provider.
Its calls block on the network, so the routes are plain functions (FastAPI runs them in a thread).
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, Path

from ..autoscaler.providers.reservations import RESERVATION_ID, ReservationRequest


def install_capacity(app: FastAPI, backend: Any, admin: Any) -> None:
    """The reservation routes over ``backend``, on ``app`` behind the ``admin`` dependency."""
    prefix = "/admin/v1/capacity"

    @app.get(prefix + "/reservations", tags=["admin"])
    def list_reservations(p=Depends(admin)):
        """The cluster's capacity reservations with their free slots (admin)."""
        return {"items": [r.to_dict() for r in backend.list()]}

    @app.post(prefix + "/reservations", status_code=201, tags=["admin"])
    def create_reservation(body: ReservationRequest, p=Depends(admin)):
        """Reserve ``count`` instances of a type in a zone, until ``end_date`` or released
        (admin)."""
        return backend.create(body).to_dict()

    @app.delete(prefix + "/reservations/{reservation_id}", tags=["admin"])
    def release_reservation(reservation_id: str = Path(pattern=RESERVATION_ID), p=Depends(admin)):
        """Release (cancel) a reservation; instances running in it keep running (admin)."""
        return backend.release(reservation_id)

    if hasattr(backend, "status"):

        @app.get(prefix + "/status", tags=["admin"])
        def capacity_status(p=Depends(admin)):
            """Per pool: capacity sources in order, blocklisted zones with the seconds they have
            left, and the last failed launch with every attempt — why a pool is not growing."""
            return backend.status()
