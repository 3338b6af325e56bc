"""The deployment examples in deploy/ run the commands they claim to, with the options the CLI accepts."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

from publisher.cli import build_parser

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def _unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read_string((DEPLOY / "publisher.service").read_text(encoding="utf-8"))
    return unit


def test_systemd_unit_runs_the_scheduler_and_stops_it_gently():
    service = _unit()["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[0].endswith("/publisher")
    args = build_parser().parse_args(argv[1:])
    assert args.command == "schedule" and not args.once
    assert service["Restart"] == "on-failure"
    assert service["KillSignal"] == "SIGTERM"
    assert "5" in service["RestartPreventExitStatus"].split()  # a second scheduler must not be restarted in a loop
    assert service["EnvironmentFile"].startswith("/")  # secrets come from the environment, not settings.toml
    assert "PUBLISHER_" not in service["ExecStart"]


def test_cron_example_calls_publisher_run():
    lines = [ln for ln in (DEPLOY / "publisher-run.cron").read_text(encoding="utf-8").splitlines()
             if ln.strip() and not ln.startswith("#") and "=" not in ln.split()[0]]
    assert len(lines) == 1
    fields = lines[0].split(None, 5)
    assert fields[:5] == ["*/15", "*", "*", "*", "*"]
    command = fields[5].split("&&")[-1].split(">>")[0]
    argv = shlex.split(command)
    assert argv[0].endswith("/publisher")
    assert build_parser().parse_args(argv[1:]).command == "run"
