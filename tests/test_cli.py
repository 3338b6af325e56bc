"""The command line: every command has help, user mistakes are one line and a distinct exit code."""

from __future__ import annotations

import subprocess
import sys

import pytest

from publisher.cli import build_parser


def _commands(parser, prefix=()):
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from _commands(sub, (*prefix, name))


COMMANDS = list(_commands(build_parser()))


def test_all_commands_are_listed():
    names = {c[0] for c in COMMANDS}
    assert names == {"fetch", "preview", "send", "subscribers", "serve", "status", "run", "schedule", "bounces",
                     "users", "archive", "db"}
    assert ("subscribers", "import") in COMMANDS
    assert {("db", "version"), ("db", "upgrade"), ("db", "copy")} <= set(COMMANDS)
    assert {("users", "add"), ("users", "list"), ("users", "remove")} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c))
def test_every_command_has_help(command):
    proc = subprocess.run([sys.executable, "-m", "publisher", *command, "--help"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert f"usage: publisher {' '.join(command)}" in proc.stdout.replace("\n", " ").replace("  ", " ")
    subs = [a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction"][0]
    assert subs.choices[command[0]].description or any(
        ch.dest == command[0] and ch.help for ch in subs._choices_actions)


def test_bad_settings_is_one_line_exit_2(project):
    project.write_settings(project.settings.read_text().replace("port = 587", 'port = "abc"'))
    proc = project.cli("status")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"publisher: error: {project.settings}: [smtp].port must be an integer, not 'abc'"
    assert "Traceback" not in proc.stderr


def test_bad_now_is_one_line(project):
    proc = project.cli("--now", "2026-11-23 09:00", "status")
    assert proc.returncode == 2
    assert "has no UTC offset" in proc.stderr and "Traceback" not in proc.stderr


def test_send_with_a_channel_the_campaign_does_not_use_is_refused_before_anything(project):
    proc = project.cli("--now", "2026-11-23T10:00:00+01:00", "send", "endurance", "--channel", "fax")
    assert proc.returncode == 2
    assert "--channel fax: campaign endurance does not use it (it uses email, x, mastodon, bluesky)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (project.root / "var" / "outbox").exists()
