"""Real mail checkers run on this machine: SpamAssassin with local rules only, and the Nu HTML checker.

scripts/test installs them (Debian `spamassassin`, `default-jre-headless` when `java` is missing, and the
`vnu-jar` npm package under .tools/vnu/); a test that needs one skips, naming the package, when it is missing.
Nothing here reaches the network: `spamassassin -L` runs the local tests only, and vnu checks files.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
VNU_JAR = REPO / ".tools" / "vnu" / "node_modules" / "vnu-jar" / "build" / "dist" / "vnu.jar"
_SCORE = re.compile(r"^X-Spam-Status: \w+, score=(-?[\d.]+)", re.M)
_RULE = re.compile(r"^\s*(-?\d+\.\d+)\s+([A-Z0-9_]+)\s", re.M)


def spam_score(message: bytes) -> tuple[float, dict[str, float]]:
    """SpamAssassin's score of `message` with local rules only, and the rules that fired with their points."""
    binary = shutil.which("spamassassin")
    if binary is None:
        pytest.skip("spamassassin not found: install the Debian package spamassassin (scripts/test does)")
    proc = subprocess.run([binary, "-L", "-t"], input=message, capture_output=True, timeout=300, check=False)
    out = proc.stdout.decode("utf-8", "replace")
    found = _SCORE.search(out)
    assert found, f"no X-Spam-Status in SpamAssassin's output: {proc.stderr.decode()[-500:]}"
    report = out.split("Content analysis details:", 1)[-1]
    return float(found.group(1)), {name: float(points) for points, name in _RULE.findall(report)}


def nu_errors(files: list[Path]) -> list[dict]:
    """The Nu HTML checker's errors (not warnings) for `files`, each {"url", "message", "extract", ...}."""
    java = shutil.which("java")
    if java is None:
        pytest.skip("java not found: install the Debian package default-jre-headless (scripts/test does)")
    if not VNU_JAR.is_file():
        pytest.skip(f"{VNU_JAR} not found: run scripts/test (npm install --prefix .tools/vnu vnu-jar)")
    proc = subprocess.run([java, "-jar", str(VNU_JAR), "--errors-only", "--format", "json", *map(str, files)],
                          capture_output=True, text=True, timeout=300, check=False)
    return json.loads(proc.stderr or "{}").get("messages", [])
