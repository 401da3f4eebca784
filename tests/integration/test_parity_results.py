"""Result stores, records and LocalFileSystem blocks behave as Prefect 3.9.1's."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

from millstream import flow, task
from millstream.filesystems import LocalFileSystem
from millstream.locking.memory import MemoryLockManager
from millstream.results import ResultRecord, ResultStore, get_result_store


def test_write_read_exists_and_records_compare_by_value(tmp_path: Path):
    store = ResultStore(result_storage=LocalFileSystem(basepath=tmp_path))
    store.write({"a": (1, 2)}, key="k1")
    assert store.exists("k1") and not store.exists("missing")
    record = store.read("k1")
    assert isinstance(record, ResultRecord) and record.result == {"a": (1, 2)}
    assert record.metadata.storage_key == "k1" and record.is_persisted
    # A second store over the same directory (given as a Path) reads the same record.
    other = ResultStore(result_storage=tmp_path, cache_result_in_memory=False)
    assert other.read("k1") == record


def test_create_persist_and_round_trip_a_record(tmp_path: Path):
    store = ResultStore(result_storage=str(tmp_path), serializer="json")
    record = store.create_result_record([1, 2, 3])
    assert len(record.metadata.storage_key) == 32 and not record.is_persisted
    store.persist_result_record(record)
    assert record.is_persisted
    again = ResultRecord.deserialize(record.serialize())
    assert again.result == [1, 2, 3] and again.metadata.serializer.type == "json"
    assert store.read(record.metadata.storage_key).result == [1, 2, 3]


def test_expired_records_do_not_exist(tmp_path: Path):
    store = ResultStore(result_storage=tmp_path)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    store.write(1, key="old", expiration=past)
    assert not store.exists("old")


def test_metadata_storage_keeps_values_and_metadata_apart(tmp_path: Path):
    store = ResultStore(result_storage=tmp_path / "values", metadata_storage=tmp_path / "meta")
    store.write("v", key="split")
    assert (tmp_path / "values" / "split").exists() and (tmp_path / "meta" / "split").exists()
    assert (
        ResultStore(result_storage=tmp_path / "values", metadata_storage=tmp_path / "meta")
        .read("split")
        .result
        == "v"
    )


def test_async_twins(tmp_path: Path):
    store = ResultStore(result_storage=tmp_path)

    async def main() -> object:
        await store.awrite(7, key="a")
        assert await store.aexists("a")
        return (await store.aread("a")).result

    assert asyncio.run(main()) == 7


def test_locks_guard_writes_by_other_holders(tmp_path: Path):
    store = ResultStore(result_storage=tmp_path, lock_manager=MemoryLockManager())
    assert MemoryLockManager() is MemoryLockManager()
    assert store.acquire_lock("k", holder="me")
    assert store.is_locked("k") and store.is_lock_holder("k", "me")
    with pytest.raises(RuntimeError, match="locked by another holder"):
        store.write(1, key="k", holder="someone-else")
    store.write(1, key="k", holder="me")
    with pytest.raises(ValueError, match="No lock held by other"):
        store.release_lock("k", holder="other")
    store.release_lock("k", holder="me")
    assert not store.is_locked("k")
    assert store.acquire_lock("exp", holder="a") and not store.acquire_lock(
        "exp", holder="b", timeout=0.05
    )
    store.release_lock("exp", holder="a")


def test_without_a_lock_manager_locking_is_a_configuration_error():
    from millstream.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match="lock manager"):
        ResultStore().acquire_lock("k")
    assert ResultStore().supports_isolation_level("READ_COMMITTED")
    assert not ResultStore().supports_isolation_level("SERIALIZABLE")


def test_a_persisted_task_result_reads_through_a_result_store(tmp_path: Path):
    @task(persist_result=True, result_storage=tmp_path, result_storage_key="answer-{x}")
    def t(x: int) -> dict:
        return {"x": x}

    @flow
    def f() -> dict:
        return t(3)

    assert f() == {"x": 3}
    assert ResultStore(result_storage=tmp_path).read("answer-3").result == {"x": 3}


def test_get_result_store_follows_the_run():
    seen = {}

    @flow(result_serializer="json")
    def f() -> None:
        seen["store"] = get_result_store()

    f()
    assert seen["store"].serializer.type == "json"


def test_local_file_system_paths_blocks_and_directories(tmp_path: Path):
    fs = LocalFileSystem(basepath=tmp_path / "base")
    written = fs.write_path("x/y.txt", b"hi")
    assert written == str((tmp_path / "base" / "x" / "y.txt").resolve())
    assert fs.read_path("x/y.txt") == b"hi" and fs.read_path(written) == b"hi"
    with pytest.raises(ValueError, match="does not exist"):
        fs.read_path("missing")
    with pytest.raises(ValueError, match="outside of the base path"):
        fs.read_path("../elsewhere")
    block_id = fs.save("my-storage")
    with pytest.raises(ValueError, match="overwrite=True"):
        fs.save("my-storage")
    assert fs.save("my-storage", overwrite=True) == block_id
    loaded = LocalFileSystem.load("my-storage")
    assert loaded == fs and loaded._block_document_id == block_id
    assert LocalFileSystem.load("local-file-system/my-storage") == fs
    with pytest.raises(ValueError, match="Unable to find block document named nope"):
        LocalFileSystem.load("nope")
    fs.get_directory(local_path=str(tmp_path / "copy"))
    assert (tmp_path / "copy" / "x" / "y.txt").read_bytes() == b"hi"

    async def main() -> bytes:
        block = await LocalFileSystem.load("my-storage")
        await block.write_path("z.txt", b"async")
        return await block.read_path("z.txt")

    assert asyncio.run(main()) == b"async"


def test_a_saved_block_loads_in_another_process(tmp_path: Path, millstream_home: Path):
    LocalFileSystem(basepath=tmp_path).save("shared")
    code = (
        "from millstream.filesystems import LocalFileSystem;"
        "print(LocalFileSystem.load('shared').basepath)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == str(tmp_path)


def test_a_flow_takes_a_saved_block_as_result_storage(tmp_path: Path):
    LocalFileSystem(basepath=tmp_path).save("results-here")

    @flow(persist_result=True, result_storage=LocalFileSystem.load("results-here"))
    def f() -> int:
        return 41 + 1

    state = f(return_state=True)
    assert state.result() == 42
    assert any(tmp_path.iterdir())


@pytest.mark.slow
def test_file_system_locks_are_shared_by_processes(tmp_path: Path):
    from millstream.locking.filesystem import FileSystemLockManager

    locks = FileSystemLockManager(tmp_path / "locks")
    assert locks.acquire_lock("k", holder="parent")
    code = (
        "import sys; from millstream.locking.filesystem import FileSystemLockManager as L;"
        f"m = L({str(tmp_path / 'locks')!r});"
        "print(m.is_locked('k'), m.acquire_lock('k', 'child', acquire_timeout=0.2))"
    )

    def child() -> str:
        return subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
        ).stdout.strip()

    assert child() == "True False"
    locks.release_lock("k", holder="parent")
    assert child() == "False True"
    with pytest.raises(ValueError, match="No lock held by parent"):
        locks.release_lock("k", holder="parent")
    # A lock past its hold timeout is free to the next holder.
    assert locks.acquire_lock("t", holder="a", hold_timeout=0.0)
    assert locks.acquire_lock("t", holder="b", acquire_timeout=1)


def test_null_metadata_storage_writes_bare_values_and_records_load_from_metadata(
    millstream_home: Path,
):
    from millstream.filesystems import NullFileSystem
    from millstream.result_records import ResultRecordMetadata
    from millstream.serializers import JSONSerializer
    from millstream.settings import MILLSTREAM_RESULTS_LOCAL_STORAGE_PATH

    store = ResultStore(metadata_storage=NullFileSystem(), serializer=JSONSerializer())
    record = store.create_result_record("The results are in...", "the-key")
    asyncio.run(store.apersist_result_record(record))
    stored = MILLSTREAM_RESULTS_LOCAL_STORAGE_PATH.value() / "the-key"
    assert JSONSerializer().loads(stored.read_bytes()) == "The results are in..."
    loaded = asyncio.run(ResultStore._from_metadata(record.metadata))
    assert loaded.result == "The results are in..."
    assert isinstance(record.metadata, ResultRecordMetadata)


def test_network_file_systems_are_refused_by_name():
    from millstream.exceptions import NotSupportedError
    from millstream.filesystems import SMB, RemoteFileSystem

    with pytest.raises(NotSupportedError, match=r"RemoteFileSystem\(\.\.\.\) stores results"):
        RemoteFileSystem(basepath="s3://bucket/results")
    with pytest.raises(NotSupportedError, match="LocalFileSystem"):
        SMB(share_path="/x", smb_host="h")


def test_a_saved_block_as_the_default_result_storage(tmp_path: Path):
    from millstream.exceptions import ConfigurationError
    from millstream.results import get_default_result_storage
    from millstream.settings import PREFECT_DEFAULT_RESULT_STORAGE_BLOCK, temporary_settings
    from millstream.transactions import transaction

    block_id = LocalFileSystem(basepath=tmp_path / "blocked").save("default-results")
    with temporary_settings(
        {PREFECT_DEFAULT_RESULT_STORAGE_BLOCK: "local-file-system/default-results"}
    ):
        assert get_default_result_storage().basepath == tmp_path / "blocked"
        with transaction(key="outside-a-run", write_on_commit=True) as txn:
            txn.stage({"foo": "bar"})
        record = txn.read()
        assert record.result == {"foo": "bar"} and record.metadata.storage_block_id == block_id
        assert (tmp_path / "blocked" / "outside-a-run").exists()

        @flow(persist_result=True)
        def big() -> bytes:
            return b"x" * 200_000  # larger than inline results: written as a file

        assert big() == b"x" * 200_000
        assert len(list((tmp_path / "blocked").iterdir())) == 2
    with temporary_settings({PREFECT_DEFAULT_RESULT_STORAGE_BLOCK: "local-file-system/none"}):
        with pytest.raises(ConfigurationError, match="no LocalFileSystem was saved as 'none'"):
            get_default_result_storage()
