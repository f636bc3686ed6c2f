"""Numeric settings are checked when the file is read, with a message to act on."""

from __future__ import annotations

from typing import Any

import pytest

from appliance.config import ConfigError, from_mapping


def _raw(section: str, key: str, value: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "hsm": {"module": "/usr/lib/softhsm/libsofthsm2.so", "token_label": "coffre", "pin_env": "X"},
        "database": {"url": "sqlite:///x.db"},
    }
    raw.setdefault(section, {})[key] = value
    return raw


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("server", "concurrent_operations", 0, "at least 1"),
        ("server", "concurrent_operations", "2", "must be a number"),
        ("server", "concurrent_operations", True, "must be a number"),
        ("server", "max_body_bytes", -1, "at least 1"),
        ("hsm", "pool_size", 0, "at least 1"),
        ("hsm", "acquire_timeout", 0, "greater than 0"),
        ("hsm", "cache_ttl_seconds", "60", "must be a number"),
        ("hsm", "cache_entries", -1, "at least 0"),
        ("security", "max_pin_failures", 0, "at least 1"),
        ("crypto", "argon2_time_cost", 1.5, "must be a number"),
    ],
)
def test_a_bad_number_is_a_config_error_naming_the_setting(section, key, value, message):
    with pytest.raises(ConfigError, match=message) as caught:
        from_mapping(_raw(section, key, value))
    assert f"[{section}] {key}" in str(caught.value)


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("hsm", "cache_entries", 0),  # caching off
        ("hsm", "acquire_timeout", 2),  # an integer where a float is expected
        ("hsm", "cache_ttl_seconds", 0.5),
        ("server", "concurrent_operations", 4),
        ("security", "password_min_score", 0),
    ],
)
def test_good_numbers_are_accepted(section, key, value):
    settings = from_mapping(_raw(section, key, value))
    target = settings.hsm if section == "hsm" else getattr(settings, section)
    assert getattr(target, key) == value


def test_no_proxy_is_trusted_by_default():
    settings = from_mapping(_raw("server", "port", 8080))
    assert settings.server.trusted_proxies == ()
    assert settings.server.unix_socket is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("unix", "must be a list of strings"),
        (["unix", 7], "must be a list of strings"),
        (["localhost"], 'neither "unix" nor an IP address'),
        (["10.0.0.0/8"], 'neither "unix" nor an IP address'),
    ],
)
def test_trusted_proxies_are_unix_or_addresses(value, message):
    with pytest.raises(ConfigError, match=message):
        from_mapping(_raw("server", "trusted_proxies", value))


def test_unix_trust_and_socket_are_read():
    raw = _raw("server", "trusted_proxies", ["unix", "192.0.2.10"])
    raw["server"]["unix_socket"] = "/run/coffre/coffre.sock"
    settings = from_mapping(raw)
    assert settings.server.trusted_proxies == ("unix", "192.0.2.10")
    assert settings.server.unix_socket == "/run/coffre/coffre.sock"
    with pytest.raises(ConfigError, match="unix_socket must be a path"):
        from_mapping(_raw("server", "unix_socket", ""))
