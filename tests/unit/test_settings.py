"""Settings from environment, toml file and temporary overrides; errors name the setting."""

from __future__ import annotations

import asyncio

import pytest

from engine.exceptions import ConfigurationError
from sdk.settings import get_current_settings, temporary_settings


def test_defaults_follow_home(millstream_home):
    settings = get_current_settings()
    assert settings.home == millstream_home
    assert settings.database_path == millstream_home / "millstream.db"
    assert settings.results.local_storage_path == millstream_home / "storage"
    assert (settings.logging.level, settings.logging.format) == ("INFO", "console")
    assert settings.results.persist_by_default is False


def test_environment_values_are_coerced(monkeypatch, tmp_path):
    monkeypatch.setenv("MILLSTREAM_TASKS_DEFAULT_RETRIES", "3")
    monkeypatch.setenv("MILLSTREAM_TASKS_DEFAULT_RETRY_DELAY_SECONDS", "[1, 2.5]")
    monkeypatch.setenv("MILLSTREAM_RESULTS_PERSIST_BY_DEFAULT", "true")
    monkeypatch.setenv("MILLSTREAM_LOGGING_FORMAT", "json")
    monkeypatch.setenv("MILLSTREAM_RESULTS_PICKLE", "false")
    monkeypatch.setenv("MILLSTREAM_DATABASE_PATH", str(tmp_path / "other.db"))
    settings = get_current_settings()
    assert settings.tasks.default_retries == 3
    assert settings.tasks.default_retry_delay_seconds == [1, 2.5]
    assert settings.results.persist_by_default is True
    assert settings.results.pickle_fallback is False
    assert settings.logging.format == "json"
    assert settings.database_path == tmp_path / "other.db"


def test_toml_file_under_environment(millstream_home, monkeypatch):
    (millstream_home / "millstream.toml").write_text(
        "[results]\npersist_by_default = true\n[logging]\nlevel = 'DEBUG'\n"
    )
    assert get_current_settings().results.persist_by_default is True
    monkeypatch.setenv("MILLSTREAM_LOGGING_LEVEL", "ERROR")
    assert get_current_settings().logging.level == "ERROR"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MILLSTREAM_TASKS_DEFAULT_RETRIES", "-1"),
        ("MILLSTREAM_TASKS_DEFAULT_RETRIES", "many"),
        ("MILLSTREAM_LOGGING_LEVEL", "LOUD"),
        ("MILLSTREAM_LOGGING_FORMAT", "xml"),
        ("MILLSTREAM_SERVE_POLL_INTERVAL", "0"),
    ],
)
def test_bad_environment_values_name_the_setting(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=name):
        get_current_settings()


def test_bad_toml_is_named(millstream_home):
    (millstream_home / "millstream.toml").write_text("[results\n")
    with pytest.raises(ConfigurationError, match=r"millstream\.toml"):
        get_current_settings()
    (millstream_home / "millstream.toml").write_text("[results]\nbogus = 1\n")
    with pytest.raises(ConfigurationError, match=r"results\.bogus"):
        get_current_settings()


def test_temporary_settings_nest_and_restore():
    with temporary_settings({"results.persist_by_default": True}) as outer:
        assert outer.results.persist_by_default is True
        with temporary_settings(MILLSTREAM_TASKS_DEFAULT_RETRIES=2) as inner:
            assert inner.tasks.default_retries == 2
            assert inner.results.persist_by_default is True
        assert get_current_settings().tasks.default_retries == 0
    assert get_current_settings().results.persist_by_default is False
    with pytest.raises(ConfigurationError, match="nope"):
        with temporary_settings({"results.nope": 1}):
            pass


def test_temporary_settings_are_local_to_a_task():
    async def main() -> tuple[int, int]:
        seen: dict[str, int] = {}
        started = asyncio.Event()
        done = asyncio.Event()

        async def inside() -> None:
            with temporary_settings({"tasks.default_retries": 7}):
                started.set()
                await done.wait()
                seen["inside"] = get_current_settings().tasks.default_retries

        async def outside() -> None:
            await started.wait()
            seen["outside"] = get_current_settings().tasks.default_retries
            done.set()

        await asyncio.gather(inside(), outside())
        return seen["inside"], seen["outside"]

    assert asyncio.run(main()) == (7, 0)


def test_cache_sees_environment_changes(monkeypatch):
    assert get_current_settings().flows.default_retries == 0
    monkeypatch.setenv("MILLSTREAM_FLOWS_DEFAULT_RETRIES", "4")
    assert get_current_settings().flows.default_retries == 4
