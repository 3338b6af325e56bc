"""Shared fixtures: a throw-away copy of the project (settings, campaigns, samples) and a CLI runner.

Area-specific servers (SMTP, feeds, social APIs) live in their own tests/*_servers.py modules.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Project:
    """A copy of the repository's settings, campaigns and samples in a temporary folder."""

    root: Path
    store_url: str | None = None  # a PostgreSQL store (any_project), else var/publisher.sqlite3
    env: dict[str, str] = field(default_factory=dict)  # what every cli() run gets (the store's password)

    def use_store(self, url: str, password: str) -> None:
        """Point [publisher].store at a PostgreSQL database; the password goes in the environment."""
        text = self.settings.read_text(encoding="utf-8")
        assert 'store = "var/publisher.sqlite3"' in text
        self.write_settings(text.replace('store = "var/publisher.sqlite3"', f'store = "{url}"'))
        self.store_url = url
        self.env["PUBLISHER_STORE_PASSWORD"] = password

    @property
    def settings(self) -> Path:
        return self.root / "settings.toml"

    def write_settings(self, text: str) -> None:
        self.settings.write_text(text, encoding="utf-8")

    def append_settings(self, text: str) -> None:
        with self.settings.open("a", encoding="utf-8") as fh:
            fh.write("\n" + text + "\n")

    def cli(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120, check: bool = False,
            input: str | None = None) -> subprocess.CompletedProcess:
        """Run `publisher --settings <copy> ARGS` in a real subprocess, as a user would."""
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")}
        full_env.update(self.env)
        full_env.update(env or {})
        proc = subprocess.run([sys.executable, "-m", "publisher", "--settings", str(self.settings), *args],
                              cwd=self.root, env=full_env, capture_output=True, text=True, timeout=timeout,
                              input=input)
        if check and proc.returncode != 0:
            raise AssertionError(f"publisher {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc


@pytest.fixture
def project(request, tmp_path: Path) -> Project:
    """A fresh copy of settings.toml, campaigns/, samples/ and templates/ with its own var/ folder.

    PUBLISHER_TEST_STORE=postgresql gives every such project a PostgreSQL store instead (a developer's sweep
    for SQL that only PostgreSQL refuses; tests that open the SQLite file themselves fail in that mode)."""
    if os.environ.get("PUBLISHER_TEST_STORE") == "postgresql":
        return _on_postgres(request, _copy_project(tmp_path))
    return _copy_project(tmp_path)


def _copy_project(tmp_path: Path) -> Project:
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(REPO / "settings.toml", root / "settings.toml")
    for folder in ("campaigns", "samples", "templates"):
        if (REPO / folder).exists():
            shutil.copytree(REPO / folder, root / folder)
    return Project(root)


@pytest.fixture(scope="session")
def postgres_server():
    """One real PostgreSQL server for the whole test session (tests/support/postgres.py)."""
    from tests.support.postgres import PostgresServer  # psycopg (test extra) loads only when a test asks

    server = PostgresServer()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_project(request, tmp_path: Path) -> Project:
    """`project`, once with its SQLite file and once with a PostgreSQL store (a fresh database, the
    sender role's password in PUBLISHER_STORE_PASSWORD, for this process and every cli() run).
    A module runs all its tests on both with a fixture named `project` that returns `any_project`."""
    project = _copy_project(tmp_path)
    return _on_postgres(request, project) if request.param == "postgresql" else project


@pytest.fixture
def pg_project(request, tmp_path: Path) -> Project:
    """`project` with a PostgreSQL store, for what only PostgreSQL has (a server that goes away)."""
    return _on_postgres(request, _copy_project(tmp_path))


def _on_postgres(request, project: Project) -> Project:
    from tests.support.postgres import SENDER, SENDER_PASSWORD

    server = request.getfixturevalue("postgres_server")
    project.use_store(server.create_database("p_" + os.urandom(6).hex(), owner=SENDER), SENDER_PASSWORD)
    # Context.open in the test itself
    request.getfixturevalue("monkeypatch").setenv("PUBLISHER_STORE_PASSWORD", SENDER_PASSWORD)
    return project


@pytest.fixture(params=["sqlite", "postgresql"])
def store_target(request, tmp_path: Path) -> str:
    """Where a store lives, once per backend: an SQLite file, then a fresh database on the test server."""
    if request.param == "sqlite":
        return str(tmp_path / "store.sqlite3")
    server = request.getfixturevalue("postgres_server")
    return server.create_database("t_" + os.urandom(6).hex())
