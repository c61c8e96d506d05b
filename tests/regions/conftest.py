"""One control plane process and two regional `orion up`s (each its own local Ray), shared by every
region test module in this package (see ``live.py``). The regions start in parallel threads."""

from __future__ import annotations

import threading
from typing import Iterator

import pytest

from tests.live_orion import free_port
from tests.regions.live import ControlPlane, Live, Region, start_region, stop_home

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

    def one(name: str) -> None:
        try:
            regions[name] = start_region(name, root / name, cp.url, cp.home, LABELS[name])
        except BaseException as exc:  # reported below, after both have finished
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(n,)) for n in LABELS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        if errors:
            raise errors[0]
        yield Live(cp, regions, markers)
    finally:
        for name in LABELS:  # every home, also one whose `orion up` failed midway
            stop_home(root / name)
        cp.down()
