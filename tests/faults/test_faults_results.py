"""Results under hostile conditions: a symlink inside the storage root cannot lead a
``result_storage_key`` outside it; a 200 MB result peaks at about twice its size in memory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fault_tools import Processes

from millstream import flow, task
from millstream.exceptions import StorageKeyError

BIG = """
import os, resource
from millstream import flow, task
SIZE = 200 * 1024 * 1024

@task(persist_result=True)
def big() -> bytes:
    return os.urandom(16) * (SIZE // 16)

@flow
def f() -> int:
    return len(big())

base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
assert f() == SIZE
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print("growth", (peak - base) / SIZE)
"""


@pytest.mark.parametrize("link", ["folder", "file"])
def test_a_symlink_in_the_storage_root_cannot_lead_a_key_outside(
    link: str, tmp_path: Path, db_path: Path
) -> None:
    root, outside = tmp_path / "results", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    if link == "folder":
        (root / "evil").symlink_to(outside, target_is_directory=True)
        key = "evil/stolen.bin"
    else:
        (outside / "target.bin").write_bytes(b"keep me")
        (root / "stolen.bin").symlink_to(outside / "target.bin")
        key = "stolen.bin"

    @task(persist_result=True, result_storage=str(root), result_storage_key=key)
    def leak() -> bytes:
        return b"secret"

    @flow
    def outer() -> object:
        return leak()

    with pytest.raises(StorageKeyError, match="outside the storage directory"):
        outer()
    assert sorted(p.name for p in outside.iterdir()) == ([] if link == "folder" else ["target.bin"])
    if link == "file":
        assert (outside / "target.bin").read_bytes() == b"keep me"


@pytest.mark.slow
def test_a_200_mb_result_peaks_at_about_twice_its_size(procs: Processes) -> None:
    if os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") < 2 * 2**30:
        pytest.skip("needs 2 GB of memory")
    code, out = procs.run(procs.script("big.py", BIG), timeout=120)
    assert code == 0, out
    (growth,) = [float(x.split()[1]) for x in out.splitlines() if x.startswith("growth")]
    # The value itself plus one encoded copy (and a few MB of interpreter noise).
    assert growth <= 2.05, growth
