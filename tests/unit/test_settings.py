"""Settings from overrides, environment, toml and defaults; caching; errors name the setting."""

from __future__ import annotations

import asyncio
import os
import re
import threading
from pathlib import Path

import pytest

from millstream._engine import settings as settings_module
from millstream._engine.exceptions import ConfigurationError
from millstream._engine.settings import ENV_NAMES, database_path, home_dir, setting_names
from millstream.settings import Settings, get_current_settings, temporary_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    # Only MILLSTREAM_HOME (set by conftest) may come from outside: a developer's own
    # MILLSTREAM_* variables must not change what these tests see.
    for name in ENV_NAMES:
        if name != "MILLSTREAM_HOME":
            monkeypatch.delenv(name, raising=False)


def write_toml(home: Path, text: str) -> Path:
    path = home / "millstream.toml"
    path.write_text(text, encoding="utf-8")
    return path


# -- defaults -----------------------------------------------------------------------------------


def test_defaults_follow_home(millstream_home):
    s = get_current_settings()
    assert isinstance(s, Settings)
    assert s.home == millstream_home
    assert s.database_path == millstream_home / "millstream.db"
    assert s.results.local_storage_path == millstream_home / "storage"
    assert (s.logging.level, s.logging.format, s.logging.max_lines_per_run) == (
        "INFO",
        "console",
        10_000,
    )
    assert s.results.persist_by_default is False
    assert s.results.default_serializer == "msgpack"
    assert s.results.pickle_fallback is True
    assert s.results.inline_max_bytes == 64 * 1024
    assert (s.tasks.default_retries, s.tasks.default_retry_delay_seconds) == (0, 0)
    assert s.tasks.refresh_cache is False
    assert (s.flows.default_retries, s.flows.default_retry_delay_seconds) == (0, 0)
    assert s.serve.poll_interval == 0.5
    assert (s.serve.heartbeat_seconds, s.serve.lease_seconds) == (10, 30)
    assert (s.serve.late_grace_seconds, s.serve.late_runs) == (60, "run")
    assert (s.serve.webserver_host, s.serve.webserver_port) == ("127.0.0.1", 8080)
    assert s.serve.token is None
    assert home_dir() == millstream_home
    assert database_path() == millstream_home / "millstream.db"


def test_default_home_is_under_the_user_home_and_is_created(monkeypatch, tmp_path):
    monkeypatch.delenv("MILLSTREAM_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    s = get_current_settings()
    assert s.home == tmp_path / ".millstream"
    assert s.home.is_dir()
    assert s.database_path == tmp_path / ".millstream" / "millstream.db"


def test_a_missing_home_is_created(monkeypatch, tmp_path):
    monkeypatch.setenv("MILLSTREAM_HOME", str(tmp_path / "a" / "b"))
    assert home_dir().is_dir()


def test_a_home_that_cannot_be_created_is_named(monkeypatch, tmp_path):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("MILLSTREAM_HOME", str(tmp_path / "file" / "home"))
    with pytest.raises(ConfigurationError, match="MILLSTREAM_HOME") as info:
        get_current_settings()
    assert str(tmp_path / "file" / "home") in str(info.value)


def test_names_of_every_setting():
    names = setting_names()
    assert names["home"] == "MILLSTREAM_HOME"
    assert names["database_path"] == "MILLSTREAM_DATABASE_PATH"
    assert names["results.persist_by_default"] == "MILLSTREAM_RESULTS_PERSIST_BY_DEFAULT"
    assert names["serve.token"] == "MILLSTREAM_SERVE_TOKEN"
    assert set(names.values()) | {"MILLSTREAM_RESULTS_PICKLE"} == set(ENV_NAMES)
    s = get_current_settings()
    for dotted, env in names.items():
        assert s.value_of(dotted) == s.value_of(env)


# -- environment ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "attribute", "expected"),
    [
        ("MILLSTREAM_RESULTS_PERSIST_BY_DEFAULT", "true", "results.persist_by_default", True),
        ("MILLSTREAM_RESULTS_PERSIST_BY_DEFAULT", "1", "results.persist_by_default", True),
        ("MILLSTREAM_RESULTS_PERSIST_BY_DEFAULT", "True", "results.persist_by_default", True),
        ("MILLSTREAM_RESULTS_PICKLE_FALLBACK", "0", "results.pickle_fallback", False),
        ("MILLSTREAM_RESULTS_PICKLE_FALLBACK", "false", "results.pickle_fallback", False),
        ("MILLSTREAM_TASKS_REFRESH_CACHE", "true", "tasks.refresh_cache", True),
        ("MILLSTREAM_TASKS_DEFAULT_RETRIES", "3", "tasks.default_retries", 3),
        (
            "MILLSTREAM_TASKS_DEFAULT_RETRY_DELAY_SECONDS",
            "2.5",
            "tasks.default_retry_delay_seconds",
            2.5,
        ),
        (
            "MILLSTREAM_TASKS_DEFAULT_RETRY_DELAY_SECONDS",
            "[1, 2.5]",
            "tasks.default_retry_delay_seconds",
            [1, 2.5],
        ),
        ("MILLSTREAM_FLOWS_DEFAULT_RETRIES", "2", "flows.default_retries", 2),
        (
            "MILLSTREAM_FLOWS_DEFAULT_RETRY_DELAY_SECONDS",
            "7",
            "flows.default_retry_delay_seconds",
            7.0,
        ),
        ("MILLSTREAM_LOGGING_LEVEL", "DEBUG", "logging.level", "DEBUG"),
        ("MILLSTREAM_LOGGING_LEVEL", "warning", "logging.level", "WARNING"),
        ("MILLSTREAM_LOGGING_FORMAT", "json", "logging.format", "json"),
        ("MILLSTREAM_LOGGING_MAX_LINES_PER_RUN", "5", "logging.max_lines_per_run", 5),
        ("MILLSTREAM_RESULTS_DEFAULT_SERIALIZER", "pickle", "results.default_serializer", "pickle"),
        ("MILLSTREAM_RESULTS_INLINE_MAX_BYTES", "1024", "results.inline_max_bytes", 1024),
        ("MILLSTREAM_SERVE_POLL_INTERVAL", "0.05", "serve.poll_interval", 0.05),
        ("MILLSTREAM_SERVE_HEARTBEAT_SECONDS", "1e1", "serve.heartbeat_seconds", 10.0),
        ("MILLSTREAM_SERVE_LEASE_SECONDS", "45", "serve.lease_seconds", 45.0),
        ("MILLSTREAM_SERVE_LATE_GRACE_SECONDS", "0", "serve.late_grace_seconds", 0.0),
        ("MILLSTREAM_SERVE_LATE_RUNS", "skip", "serve.late_runs", "skip"),
        ("MILLSTREAM_SERVE_WEBSERVER_HOST", "0.0.0.0", "serve.webserver_host", "0.0.0.0"),
        ("MILLSTREAM_SERVE_WEBSERVER_PORT", "9000", "serve.webserver_port", 9000),
        # a token is text as given, even when it looks like a number or JSON
        ("MILLSTREAM_SERVE_TOKEN", "123", "serve.token", "123"),
        ("MILLSTREAM_SERVE_TOKEN", "null", "serve.token", "null"),
        ("MILLSTREAM_SERVE_TOKEN", "[abc", "serve.token", "[abc"),
    ],
)
def test_environment_values_are_coerced(monkeypatch, name, text, attribute, expected):
    monkeypatch.setenv(name, text)
    value = get_current_settings().value_of(attribute)
    assert value == expected
    assert type(value) is type(expected)


def test_environment_paths_are_expanded_and_absolute(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MILLSTREAM_DATABASE_PATH", "~/db/runs.db")
    monkeypatch.setenv("MILLSTREAM_RESULTS_LOCAL_STORAGE_PATH", "relative/store")
    s = get_current_settings()
    assert s.database_path == tmp_path / "db" / "runs.db"
    assert s.results.local_storage_path == tmp_path / "relative" / "store"
    assert isinstance(s.database_path, Path)


def test_results_pickle_alias(monkeypatch):
    monkeypatch.setenv("MILLSTREAM_RESULTS_PICKLE", "false")
    assert get_current_settings().results.pickle_fallback is False
    # the canonical name wins over the alias
    monkeypatch.setenv("MILLSTREAM_RESULTS_PICKLE_FALLBACK", "true")
    assert get_current_settings().results.pickle_fallback is True


def test_unknown_environment_names_are_ignored(monkeypatch):
    monkeypatch.setenv("MILLSTREAM_SOMETHING_ELSE", "whatever")
    monkeypatch.setenv("MILLSTREAM_LOGGING_COLOR", "purple")
    assert get_current_settings().logging.level == "INFO"


def test_an_empty_environment_variable_counts_as_unset(monkeypatch, millstream_home):
    monkeypatch.setenv("MILLSTREAM_TASKS_DEFAULT_RETRIES", "")
    monkeypatch.setenv("MILLSTREAM_DATABASE_PATH", "")
    s = get_current_settings()
    assert s.tasks.default_retries == 0
    assert s.database_path == millstream_home / "millstream.db"


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("MILLSTREAM_TASKS_DEFAULT_RETRIES", "-1"),
        ("MILLSTREAM_TASKS_DEFAULT_RETRIES", "many"),
        ("MILLSTREAM_TASKS_DEFAULT_RETRIES", "1.5"),
        ("MILLSTREAM_FLOWS_DEFAULT_RETRIES", "-2"),
        ("MILLSTREAM_TASKS_DEFAULT_RETRY_DELAY_SECONDS", "[1, -2]"),
        ("MILLSTREAM_TASKS_DEFAULT_RETRY_DELAY_SECONDS", "[1, 2"),
        ("MILLSTREAM_TASKS_DEFAULT_RETRY_DELAY_SECONDS", "-1"),
        ("MILLSTREAM_FLOWS_DEFAULT_RETRY_DELAY_SECONDS", "[1, 2]"),
        ("MILLSTREAM_LOGGING_LEVEL", "LOUD"),
        ("MILLSTREAM_LOGGING_FORMAT", "xml"),
        ("MILLSTREAM_LOGGING_MAX_LINES_PER_RUN", "lots"),
        ("MILLSTREAM_RESULTS_PERSIST_BY_DEFAULT", "maybe"),
        ("MILLSTREAM_RESULTS_PICKLE", "2"),
        ("MILLSTREAM_RESULTS_DEFAULT_SERIALIZER", "yaml"),
        ("MILLSTREAM_RESULTS_INLINE_MAX_BYTES", "-5"),
        ("MILLSTREAM_SERVE_POLL_INTERVAL", "0"),
        ("MILLSTREAM_SERVE_HEARTBEAT_SECONDS", "inf"),
        ("MILLSTREAM_SERVE_LEASE_SECONDS", "nan"),
        ("MILLSTREAM_SERVE_LATE_GRACE_SECONDS", "-1"),
        ("MILLSTREAM_SERVE_LATE_RUNS", "later"),
        ("MILLSTREAM_SERVE_WEBSERVER_PORT", "70000"),
    ],
)
def test_bad_environment_values_name_the_variable_and_value(monkeypatch, name, text):
    monkeypatch.setenv(name, text)
    with pytest.raises(ConfigurationError) as info:
        get_current_settings()
    assert name in str(info.value)
    assert repr(text) in str(info.value)


def test_a_lease_must_outlast_heartbeats(monkeypatch):
    monkeypatch.setenv("MILLSTREAM_SERVE_HEARTBEAT_SECONDS", "40")
    with pytest.raises(ConfigurationError) as info:
        get_current_settings()
    message = str(info.value)
    assert "MILLSTREAM_SERVE_HEARTBEAT_SECONDS = 40.0" in message
    assert "serve.lease_seconds (default) = 30.0" in message


# -- the toml file --------------------------------------------------------------------------------


def test_toml_file_sets_sections_and_database_path(millstream_home, tmp_path):
    write_toml(
        millstream_home,
        f"database_path = '{tmp_path / 'elsewhere.db'}'\n"
        "[results]\npersist_by_default = true\nlocal_storage_path = '/srv/results'\n"
        "[logging]\nlevel = 'DEBUG'\n"
        "[tasks]\ndefault_retry_delay_seconds = [1, 2, 4]\n"
        "[serve]\ntoken = 'secret'\n",
    )
    s = get_current_settings()
    assert s.database_path == tmp_path / "elsewhere.db"
    assert s.results.persist_by_default is True
    assert s.results.local_storage_path == Path("/srv/results")
    assert s.logging.level == "DEBUG"
    assert s.tasks.default_retry_delay_seconds == [1.0, 2.0, 4.0]
    assert s.serve.token == "secret"


def test_malformed_toml_names_the_file(millstream_home):
    path = write_toml(millstream_home, "[results\n")
    with pytest.raises(ConfigurationError, match="not valid TOML") as info:
        get_current_settings()
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[results]\nbogus = 1\n", "'results.bogus'"),
        ("[colours]\nred = 1\n", "'colours'"),
        ("home = '/tmp'\n", "'home'"),
        ("results = 3\n", "[results]"),
    ],
)
def test_unknown_toml_keys_are_named(millstream_home, text, named):
    path = write_toml(millstream_home, text)
    with pytest.raises(ConfigurationError) as info:
        get_current_settings()
    assert named in str(info.value)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        # toml values are typed: strings are not parsed as they are from the environment
        ("[results]\npersist_by_default = 'yes'\n", "results.persist_by_default", "'yes'"),
        ("[tasks]\ndefault_retries = -1\n", "tasks.default_retries", "-1"),
        ("[tasks]\ndefault_retries = true\n", "tasks.default_retries", "True"),
        ("[logging]\nformat = 'xml'\n", "logging.format", "'xml'"),
        ("database_path = 5\n", "database_path", "5"),
    ],
)
def test_bad_toml_values_name_the_key_and_value(millstream_home, text, key, value):
    path = write_toml(millstream_home, text)
    with pytest.raises(ConfigurationError) as info:
        get_current_settings()
    message = str(info.value)
    assert f"{key} in {str(path)!r}" in message
    assert f"bad value {value}" in message


# -- priority ----------------------------------------------------------------------------------


def test_priority_overrides_then_environment_then_toml_then_defaults(monkeypatch, millstream_home):
    name = "MILLSTREAM_TASKS_DEFAULT_RETRIES"
    with temporary_settings(set_defaults={name: 1}) as s:
        assert s.tasks.default_retries == 1
    write_toml(millstream_home, "[tasks]\ndefault_retries = 2\n")
    assert get_current_settings().tasks.default_retries == 2
    with temporary_settings(set_defaults={name: 1}) as s:
        assert s.tasks.default_retries == 2
    monkeypatch.setenv(name, "3")
    assert get_current_settings().tasks.default_retries == 3
    with temporary_settings({name: 4}) as s:
        assert s.tasks.default_retries == 4
    with temporary_settings(restore_defaults=[name]) as s:
        assert s.tasks.default_retries == 0
    assert get_current_settings().tasks.default_retries == 3


def test_toml_is_read_from_the_home_the_environment_names(monkeypatch, tmp_path):
    other = tmp_path / "other-home"
    other.mkdir()
    write_toml(other, "[flows]\ndefault_retries = 5\n")
    assert get_current_settings().flows.default_retries == 0
    monkeypatch.setenv("MILLSTREAM_HOME", str(other))
    assert get_current_settings().flows.default_retries == 5
    with temporary_settings(home=tmp_path / "third") as s:
        assert s.flows.default_retries == 0
        assert s.database_path == tmp_path / "third" / "millstream.db"


# -- temporary_settings -------------------------------------------------------------------------


def test_temporary_settings_nest_and_restore():
    before = get_current_settings()
    with temporary_settings({"results.persist_by_default": True}) as outer:
        assert outer.results.persist_by_default is True
        assert get_current_settings() is outer
        with temporary_settings(MILLSTREAM_TASKS_DEFAULT_RETRIES=2) as inner:
            assert inner.tasks.default_retries == 2
            assert inner.results.persist_by_default is True
            with temporary_settings(restore_defaults=["results.persist_by_default"]) as third:
                assert third.results.persist_by_default is False
                assert third.tasks.default_retries == 2
            assert get_current_settings().results.persist_by_default is True
        assert get_current_settings().tasks.default_retries == 0
    assert get_current_settings() == before
    assert get_current_settings().results.persist_by_default is False


def test_temporary_settings_key_spellings():
    with temporary_settings(
        {"logging.level": "DEBUG", "MILLSTREAM_RESULTS_PICKLE": False},
        serve__token="t",
        MILLSTREAM_LOGGING_FORMAT="json",
    ) as s:
        assert s.logging.level == "DEBUG"
        assert s.results.pickle_fallback is False
        assert s.serve.token == "t"
        assert s.logging.format == "json"


def test_temporary_settings_take_python_values_and_text(tmp_path):
    with temporary_settings(
        {
            "tasks.default_retry_delay_seconds": [1, 2],
            "flows.default_retries": "3",
            "results.persist_by_default": "true",
            "database_path": tmp_path / "x.db",
        }
    ) as s:
        assert s.tasks.default_retry_delay_seconds == [1.0, 2.0]
        assert s.flows.default_retries == 3
        assert s.results.persist_by_default is True
        assert s.database_path == tmp_path / "x.db"


def test_set_defaults_after_restore_defaults(monkeypatch):
    monkeypatch.setenv("MILLSTREAM_LOGGING_LEVEL", "ERROR")
    with temporary_settings(set_defaults={"logging.level": "DEBUG"}) as s:
        assert s.logging.level == "ERROR"
    with temporary_settings(restore_defaults=["logging.level"]) as s:
        assert s.logging.level == "INFO"
        with temporary_settings(set_defaults={"logging.level": "DEBUG"}) as inner:
            assert inner.logging.level == "DEBUG"
    with temporary_settings({"logging.level": "WARNING"}, restore_defaults=["logging.level"]) as s:
        assert s.logging.level == "WARNING"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"updates": {"results.nope": 1}},
        {"updates": {"MILLSTREAM_RESULTS_NOPE": 1}},
        {"set_defaults": {"results.nope": 1}},
        {"restore_defaults": ["results.nope"]},
    ],
)
def test_temporary_settings_unknown_keys_are_named(kwargs):
    with pytest.raises(ConfigurationError, match=r"(results\.nope|RESULTS_NOPE)"):
        with temporary_settings(**kwargs):
            pass
    assert get_current_settings().results.persist_by_default is False


def test_temporary_settings_bad_values_are_named_on_entry():
    with pytest.raises(ConfigurationError) as info:
        with temporary_settings({"tasks.default_retries": -3}):
            pytest.fail("entered the block")
    assert "tasks.default_retries in temporary_settings" in str(info.value)
    assert "-3" in str(info.value)
    with pytest.raises(ConfigurationError, match=re.escape("'LOUD'")):
        with temporary_settings(MILLSTREAM_LOGGING_LEVEL="LOUD"):
            pass
    assert get_current_settings().tasks.default_retries == 0


def test_temporary_settings_restore_after_an_error():
    with pytest.raises(RuntimeError):
        with temporary_settings({"tasks.default_retries": 9}):
            raise RuntimeError("boom")
    assert get_current_settings().tasks.default_retries == 0


def test_temporary_settings_see_environment_changes_inside(monkeypatch):
    with temporary_settings({"tasks.default_retries": 1}):
        monkeypatch.setenv("MILLSTREAM_FLOWS_DEFAULT_RETRIES", "6")
        s = get_current_settings()
        assert (s.tasks.default_retries, s.flows.default_retries) == (1, 6)


def test_temporary_settings_are_local_to_an_asyncio_task():
    async def main() -> dict[str, int]:
        seen: dict[str, int] = {}
        entered = asyncio.Event()
        checked = asyncio.Event()

        async def inside(name: str, retries: int) -> None:
            with temporary_settings({"tasks.default_retries": retries}):
                entered.set()
                await checked.wait()
                seen[name] = get_current_settings().tasks.default_retries

        async def outside() -> None:
            await entered.wait()
            seen["outside"] = get_current_settings().tasks.default_retries
            checked.set()

        await asyncio.gather(inside("a", 7), inside("b", 8), outside())
        seen["after"] = get_current_settings().tasks.default_retries
        return seen

    assert asyncio.run(main()) == {"a": 7, "b": 8, "outside": 0, "after": 0}


def test_temporary_settings_do_not_reach_other_threads():
    seen: list[int] = []
    with temporary_settings({"tasks.default_retries": 7}):
        thread = threading.Thread(
            target=lambda: seen.append(get_current_settings().tasks.default_retries)
        )
        thread.start()
        thread.join()
    assert seen == [0]


# -- caching ------------------------------------------------------------------------------------


def test_cache_returns_the_same_settings_until_something_changes(monkeypatch):
    first = get_current_settings()
    assert get_current_settings() is first
    monkeypatch.setenv("MILLSTREAM_FLOWS_DEFAULT_RETRIES", "4")
    second = get_current_settings()
    assert second.flows.default_retries == 4
    assert get_current_settings() is second
    monkeypatch.setenv("MILLSTREAM_FLOWS_DEFAULT_RETRIES", "5")
    assert get_current_settings().flows.default_retries == 5
    monkeypatch.delenv("MILLSTREAM_FLOWS_DEFAULT_RETRIES")
    assert get_current_settings().flows.default_retries == 0
    monkeypatch.setenv("MILLSTREAM_RESULTS_PICKLE", "0")
    assert get_current_settings().results.pickle_fallback is False


def test_cache_sees_the_home_change(monkeypatch, tmp_path):
    assert get_current_settings().home != tmp_path / "h2"
    monkeypatch.setenv("MILLSTREAM_HOME", str(tmp_path / "h2"))
    assert get_current_settings().home == tmp_path / "h2"


def test_cache_sees_toml_edits_at_once(millstream_home):
    assert get_current_settings().logging.level == "INFO"
    path = write_toml(millstream_home, "[logging]\nlevel = 'DEBUG'\n")
    assert get_current_settings().logging.level == "DEBUG"
    # same size, written within the same timestamp tick: stat alone cannot tell
    write_toml(millstream_home, "[logging]\nlevel = 'ERROR'\n")
    assert get_current_settings().logging.level == "ERROR"
    stamp = path.stat().st_mtime_ns
    write_toml(millstream_home, "[logging]\nlevel = 'DEBUG'\n")
    os.utime(path, ns=(stamp, stamp))  # even with the mtime put back
    assert get_current_settings().logging.level == "DEBUG"
    path.unlink()
    assert get_current_settings().logging.level == "INFO"


def test_an_old_unchanged_toml_file_is_not_reread(millstream_home, monkeypatch):
    path = write_toml(millstream_home, "[logging]\nlevel = 'DEBUG'\n")
    old = path.stat().st_mtime_ns - 60 * 10**9
    os.utime(path, ns=(old, old))
    first = get_current_settings()
    reads: list[Path] = []
    original = Path.read_bytes

    def counting_read_bytes(self: Path) -> bytes:
        reads.append(self)
        return original(self)

    monkeypatch.setattr(Path, "read_bytes", counting_read_bytes)
    assert get_current_settings() is first
    assert reads == []


def test_cache_is_per_override_block(monkeypatch):
    with temporary_settings({"tasks.default_retries": 1}) as s:
        assert get_current_settings() is s
        monkeypatch.setenv("MILLSTREAM_LOGGING_LEVEL", "ERROR")
        assert get_current_settings().logging.level == "ERROR"
    assert get_current_settings().logging.level == "ERROR"


def test_a_failed_build_is_not_cached(monkeypatch):
    monkeypatch.setenv("MILLSTREAM_TASKS_DEFAULT_RETRIES", "x")
    with pytest.raises(ConfigurationError):
        get_current_settings()
    with pytest.raises(ConfigurationError):
        get_current_settings()
    monkeypatch.setenv("MILLSTREAM_TASKS_DEFAULT_RETRIES", "1")
    assert get_current_settings().tasks.default_retries == 1


def test_a_replaced_os_environ_is_still_read(monkeypatch, millstream_home):
    replacement = dict(os.environ)
    replacement["MILLSTREAM_TASKS_DEFAULT_RETRIES"] = "2"
    monkeypatch.setattr(os, "environ", replacement)
    assert get_current_settings().tasks.default_retries == 2


# -- exporting ------------------------------------------------------------------------------------


def test_to_environment_variables_round_trips(monkeypatch, millstream_home):
    updates = {
        "tasks.default_retry_delay_seconds": [1, 2],
        "results.persist_by_default": True,
        "logging.format": "json",
        "serve.token": "abc",
    }
    with temporary_settings(updates) as s:
        exported = s.to_environment_variables()
        changed = s.to_environment_variables(exclude_defaults=True)
    assert changed == {
        "MILLSTREAM_HOME": str(millstream_home),
        "MILLSTREAM_TASKS_DEFAULT_RETRY_DELAY_SECONDS": "[1.0, 2.0]",
        "MILLSTREAM_RESULTS_PERSIST_BY_DEFAULT": "true",
        "MILLSTREAM_LOGGING_FORMAT": "json",
        "MILLSTREAM_SERVE_TOKEN": "abc",
    }
    assert "MILLSTREAM_RESULTS_PICKLE" not in exported
    for name, value in exported.items():
        monkeypatch.setenv(name, value)
    assert get_current_settings() == s


def test_to_environment_variables_leaves_out_none():
    exported = get_current_settings().to_environment_variables()
    assert "MILLSTREAM_SERVE_TOKEN" not in exported
    assert exported["MILLSTREAM_TASKS_DEFAULT_RETRIES"] == "0"
    assert exported["MILLSTREAM_RESULTS_PICKLE_FALLBACK"] == "true"


def test_value_of_rejects_unknown_names():
    with pytest.raises(ConfigurationError, match="nope"):
        get_current_settings().value_of("results.nope")


def test_sdk_reexports_the_engine_settings():
    assert get_current_settings is settings_module.get_current_settings
    assert temporary_settings is settings_module.temporary_settings
    assert Settings is settings_module.Settings
