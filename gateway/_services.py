"""The services one gRPC port serves: both booking APIs, health and reflection."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from grpclib.health.service import Health
from grpclib.reflection.service import ServerReflection

from leasehold.core import SlotSpec
from leasehold.gateway._admission import Admission, guard_services
from leasehold.gateway._refusals import Refusals
from leasehold.gateway._router import Router
from leasehold.gateway._service_v0 import BookingServiceV0
from leasehold.gateway._service_v2 import BookingServiceV2
from leasehold.gateway._settings import AdmissionSettings

if TYPE_CHECKING:
    from grpclib._typing import IServable


def build_services(
    router: Router, slots: Sequence[SlotSpec], admission: Admission | None = None
) -> list[IServable]:
    """The booking services, the standard health service, and reflection (v1 and v1alpha),
    each method behind `admission` (deadline, queueing delay, request size)."""
    if admission is None:
        admission = Admission(AdmissionSettings(), Refusals())
    v2 = BookingServiceV2(router, slots)
    v0 = BookingServiceV0(router)
    # No checks: SERVING for "" and each booking service's name, NOT_FOUND for others.
    health = Health({v2: [], v0: []})
    return guard_services(ServerReflection.extend([v2, v0, health]), admission)
