"""On-Demand Capacity Reservations: create one for a planned peak, list them, release them.

The boto3 EC2 client is passed in. EC2's errors become Orion's (a bad request a 4xx with its field,
an unknown id 404, no capacity 503 with the code), never a 500.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal, Optional, Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ...errors import CapacityError, NotFound, ValidationError
from .identity import TAG_CLUSTER
from .sources import Reservation
from .taxonomy import CloudError, ErrorKind, classify, error_code

RESERVATION_ID = r"^cr-[0-9a-f]{8,17}$"


class ReservationRequest(BaseModel):
    """``POST /admin/v1/capacity/reservations`` and ``orion capacity reservations create``."""

    model_config = ConfigDict(extra="forbid")
    instance_type: str = Field(pattern=r"^[a-z][a-z0-9\-]*\.[a-z0-9]+$")
    availability_zone: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d[a-z]$")
    count: int = Field(ge=1, le=10_000)
    platform: str = "Linux/UNIX"
    instance_match_criteria: Literal["targeted", "open"] = "targeted"
    end_date: Optional[dt.datetime] = Field(None, description="released by EC2 at this time (UTC)")
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("end_date")
    @classmethod
    def _future(cls, v: Optional[dt.datetime]) -> Optional[dt.datetime]:
        if v is None:
            return v
        if v.tzinfo is None:
            v = v.replace(tzinfo=dt.timezone.utc)
        if v <= dt.datetime.now(dt.timezone.utc):
            raise ValueError("end_date must be in the future")
        return v


def _from_ec2(cr: dict) -> Reservation:
    end = cr.get("EndDate")
    return Reservation(
        reservation_id=cr["CapacityReservationId"],
        instance_type=cr.get("InstanceType", ""),
        zone=cr.get("AvailabilityZone", ""),
        available=int(cr.get("AvailableInstanceCount", 0)),
        total=int(cr.get("TotalInstanceCount", 0)),
        state=cr.get("State", "unknown"),
        match_criteria=cr.get("InstanceMatchCriteria", "open"),
        end_date=end.isoformat() if hasattr(end, "isoformat") else end,
    )


def _raise_for(exc: Exception, field: str) -> None:
    code, status, message = error_code(exc)
    if code.startswith("InvalidCapacityReservationId") and "NotFound" in code:
        raise NotFound(f"no capacity reservation: {message or code}") from None
    if code.startswith("InvalidCapacityReservationId") or code in (
        "InvalidParameterValue",
        "InvalidParameterCombination",
    ):
        raise ValidationError(message or code, [{"field": field, "problem": f"{code}: {message}"}]) from None
    kind = classify(code, status)
    if kind in (ErrorKind.CAPACITY, ErrorKind.QUOTA):
        raise CapacityError(
            f"{code}: {message}",
            [{"field": field, "problem": code}],
            history=[{"error": code, "message": message, "kind": kind.value}],
        ) from None
    raise CloudError(f"EC2 {code}: {message}"[:500]) from None


class ReservationManager:
    """Capacity reservations of one cluster through a boto3 EC2 client."""

    def __init__(self, ec2_client: Any, cluster: str = "orion"):
        self.ec2 = ec2_client
        self.cluster = cluster

    def create(self, request: ReservationRequest) -> Reservation:
        """Reserve ``count`` instances of a type in a zone, tagged with the cluster."""
        kw: dict[str, Any] = dict(
            InstanceType=request.instance_type,
            InstancePlatform=request.platform,
            AvailabilityZone=request.availability_zone,
            InstanceCount=request.count,
            InstanceMatchCriteria=request.instance_match_criteria,
            TagSpecifications=[
                {
                    "ResourceType": "capacity-reservation",
                    "Tags": [
                        {"Key": k, "Value": v} for k, v in {**request.tags, TAG_CLUSTER: self.cluster}.items()
                    ],
                }
            ],
        )
        if request.end_date is not None:
            kw.update(EndDateType="limited", EndDate=request.end_date)
        else:
            kw["EndDateType"] = "unlimited"
        try:
            cr = self.ec2.create_capacity_reservation(**kw)["CapacityReservation"]
        except Exception as exc:  # botocore ClientError: mapped to Orion's errors
            _raise_for(exc, "body")
        return _from_ec2(cr)

    def list(
        self, reservation_ids: Optional[Sequence[str]] = None, cluster_only: bool = True
    ) -> list[Reservation]:
        """The cluster's reservations (or the given ones), every page."""
        kw: dict[str, Any] = {}
        if reservation_ids:
            kw["CapacityReservationIds"] = list(reservation_ids)
        elif cluster_only:
            kw["Filters"] = [{"Name": f"tag:{TAG_CLUSTER}", "Values": [self.cluster]}]
        out: list[Reservation] = []
        try:
            while True:
                page = self.ec2.describe_capacity_reservations(**kw)
                out.extend(_from_ec2(cr) for cr in page.get("CapacityReservations", []))
                token = page.get("NextToken")
                if not token:
                    return out
                kw["NextToken"] = token
        except Exception as exc:
            _raise_for(exc, "reservation_id")
        return out  # unreachable: _raise_for always raises

    def release(self, reservation_id: str) -> dict:
        """Cancel a reservation (running instances in it keep running, as on-demand)."""
        try:
            ok = self.ec2.cancel_capacity_reservation(CapacityReservationId=reservation_id)
        except Exception as exc:
            _raise_for(exc, "reservation_id")
        return {
            "reservation_id": reservation_id,
            "released": bool(ok.get("Return", False)),
            "state": "cancelled",
        }
