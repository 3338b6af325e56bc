"""The typed TOML reader behind settings.toml and campaign files: dataclass fields are the schema.

`read_table(cls, table, where)` builds a frozen dataclass from a TOML table. Unknown keys and wrong
types fail with one line naming the file and the key (`settings.toml: [smtp].port must be an
integer, not 'abc'`); a dataclass may add its own `_check(where)` and `_toml_names` aliases.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import tomllib
import types
import typing
from datetime import timedelta
from email.utils import parseaddr
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from publisher.errors import ConfigError

_FIX = "fix the value, then rerun the same command"  # the hint of a value a type check cannot catch


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is str:
        return "a string"
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        return "a list of " + _type_name(typing.get_args(tp)[0]).removeprefix("a ").removeprefix("an ") + "s"
    if origin is dict:
        return "a table"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if dataclasses.is_dataclass(tp):
        return "a table"
    return str(tp)


def _convert(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where} must be {_type_name(tp)}")
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin is Literal:
        if value in args:
            return value
    elif origin in (list, tuple):
        if isinstance(value, list):
            item_tp = args[0]
            return tuple(_convert(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value))
    elif origin is dict:
        if isinstance(value, dict):
            val_tp = args[1]
            return {str(k): _convert(v, val_tp, _sub(where, str(k))) for k, v in value.items()}
    elif dataclasses.is_dataclass(tp):
        if isinstance(value, dict):
            return read_table(tp, value, where)
    raise ConfigError(f"{where} must be {_type_name(tp)}, not {value!r}")


def _sub(where: str, key: str) -> str:
    """`settings.toml: [smtp]` + `port` -> `settings.toml: [smtp].port`."""
    if where.endswith("]") or ":" not in where:
        return f"{where}.{key}" if not where.endswith(": ") else f"{where}{key}"
    return f"{where}.{key}"


def read_table(cls: type, table: dict[str, Any], where: str) -> Any:
    """Build the frozen dataclass `cls` from a TOML table; unknown keys and wrong types fail."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    aliases = getattr(cls, "_toml_names", {})  # TOML key -> field name, e.g. "from" -> "sender"
    values: dict[str, Any] = {}
    for key, value in table.items():
        name = aliases.get(key, key.replace("-", "_"))
        if name not in fields or name.startswith("_"):
            known = ", ".join(sorted({k for k, v in aliases.items()} | {f for f in fields if f not in aliases.values()}))
            raise ConfigError(f"{where}: unknown key '{key}' (known keys: {known})")
        values[name] = _convert(value, hints[name], _key_where(where, key))
    missing = [n for n, f in fields.items()
               if n not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{where}: missing required key '{missing[0]}'")
    obj = cls(**values)
    check = getattr(obj, "_check", None)
    if check:
        check(where)
    return obj


def _key_where(where: str, key: str) -> str:
    # "campaigns/gt.toml" + "timezone" -> "campaigns/gt.toml: timezone"
    # "settings.toml: [smtp]" + "port" -> "settings.toml: [smtp].port"
    if where.endswith("]"):
        return f"{where}.{key}"
    if ": " in where:
        return f"{where}.{key}"
    return f"{where}: {key}"


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")


def parse_duration(text: str, where: str) -> timedelta:
    """'90s', '15m', '1h', '2d' -> timedelta."""
    m = _DURATION.match(text)
    if not m:
        raise ConfigError(f"{where} must be a duration like '30s', '15m', '1h' or '2d', not {text!r}")
    n = float(m.group(1))
    return timedelta(seconds=n * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)])


_ADDRESS = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
DOMAIN = re.compile(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


def check_address(value: str, where: str) -> None:
    """An ASCII mail address, optionally with a display name: 'Endurance-Info <news@example.org>'."""
    _, addr = parseaddr(value)
    if "\r" in value or "\n" in value or not _ADDRESS.match(addr):
        raise ConfigError(f"{where} must be an address like 'Name <newsletter@example.org>', not {value!r}",
                          hint=_FIX)


def check_url(value: str, where: str, example: str = "https://example.org/...") -> None:
    """An absolute http(s) URL with a host and no spaces ("mastodon.social" alone is not one)."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in value):
        raise ConfigError(f"{where} must be an http(s) URL like {example!r}, not {value!r}", hint=_FIX)


_HOST_NAME = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?$")


def check_host(value: str, where: str, *, address_literal: bool = False) -> None:
    """A host name or an IP address, without scheme, port, path or spaces (each has its own key).

    `address_literal` also accepts RFC 5321's bracketed forms, "[192.0.2.1]" and "[IPv6:2001:db8::1]", as an
    EHLO name may be."""
    bare = value[1:-1].removeprefix("IPv6:") if address_literal and value.startswith("[") and value.endswith("]") else value
    try:
        ipaddress.ip_address(bare)
        return
    except ValueError:
        pass
    if bare != value or len(value) > 253 or not _HOST_NAME.match(value):
        raise ConfigError(f"{where} must be a host name or IP address like 'smtp.example.org' (no scheme, port or path),"
                          f" not {value!r}", hint=_FIX)


def check_readable_file(path: Path, where: str, hint: str) -> None:
    """`path` (already resolved, and named so in the message) is a file this process can read."""
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"{where} {path} cannot be read ({exc.strerror or exc})", hint=hint) from None


def check_timezone(name: str, where: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{where}: unknown time zone {name!r} (use an IANA name like 'Europe/Paris')") from None


def read_toml(path: Path, shown: str) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{shown}: file not found", hint="create it, or pass --settings PATH") from None
    except IsADirectoryError:
        raise ConfigError(f"{shown}: is a folder, not a TOML file", hint="pass --settings PATH/settings.toml") from None
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read ({exc.strerror})", hint="check the file's permissions") from None
    except UnicodeDecodeError as exc:  # tomllib decodes UTF-8 itself; a Latin-1 file fails here
        raise ConfigError(f"{shown}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})",
                          hint="save it as UTF-8 (e.g. 'iconv -f latin1 -t utf-8'), then rerun the same command") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{shown}: not valid TOML ({exc})") from None


def check_at_least(obj: Any, where: str, minimum: float, *names: str, meaning: str = "") -> None:
    """Fail with `where.name must be at least N` when a numeric field is below `minimum`.

    Types are checked by read_table; this is for values a type cannot rule out (`timeout = 0` fails
    every request)."""
    check_range(obj, where, minimum, None, *names, meaning=meaning)


def check_range(obj: Any, where: str, low: float, high: float | None, *names: str, meaning: str = "") -> None:
    """Fail with `where.name must be from LOW to HIGH` (or `at least LOW` when `high` is None)."""
    for name in names:
        value = getattr(obj, name)
        if value is None or (value >= low and (high is None or value <= high)):
            continue
        bound = f"at least {low:g}" if high is None else f"from {low:g} to {high:g}"
        raise ConfigError(f"{_key_where(where, name)} must be {bound}{meaning}, not {value!r}", hint=_FIX)


def check_port(value: int, where: str, *, zero_ok: bool = False) -> None:
    """A TCP port number: 1-65535 (0, "any free port", only where `zero_ok`)."""
    if not (0 if zero_ok else 1) <= value <= 65535:
        low = 0 if zero_ok else 1
        raise ConfigError(f"{where} must be a port number from {low} to 65535, not {value!r}", hint=_FIX)
