"""One control plane process and two regional `orion up`s (each its own local Ray), shared by every
region test module in this package (see ``live.py``)."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.live_orion import free_port
from tests.regions.live import ControlPlane, Live, Region, start_region, stop_home, wait_for

LABELS = {"r-east": {"zone": "east", "data": "s3-east"}, "r-west": {"zone": "west", "data": "s3-west"}}


@pytest.fixture(scope="package")
def live(tmp_path_factory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("orion-regions")
    markers = root / "markers"
    markers.mkdir()
    cp = ControlPlane(root / "cp", free_port())
    cp.up()
    regions: dict[str, Region] = {}
    errors: list[BaseException] = []
    # one after the other: two Ray heads starting at once on a loaded 2-core machine pushed
    # `orion up`'s executor start past its 180 s bound
    for name in LABELS:
        try:
            regions[name] = start_region(name, root / name, cp.url, cp.home, LABELS[name])
        except BaseException as exc:  # reported below, after the clean-up is armed
            errors.append(exc)
            break
    try:
        if errors:
            raise errors[0]
        for name in LABELS:  # both joined and heartbeating with their capacity
            wait_for(lambda n=name: cp.region(n)["free_cpus"] > 0, about=f"{name} heartbeating")
        yield Live(cp, regions, markers)
    finally:
        for name in LABELS:  # every home, also one whose `orion up` failed midway
            stop_home(root / name)
        cp.down()
