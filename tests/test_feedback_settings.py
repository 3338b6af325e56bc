"""Bad [email] feedback keys, [bounces] and [webhooks] settings: one line naming the file and key, exit 2."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("table, text, words", [
    ("email", 'return_path = "bounces+x@example.org"', "settings.toml: [email].return_path must be a plain address"),
    ("email", 'return_path = "not an address"', "settings.toml: [email].return_path"),
    ("email", 'feedback_id = "a:b"', "settings.toml: [email].feedback_id must be letters"),
    ("email", 'dkim_selector = "a b"', "settings.toml: [email].dkim_selector must be a DNS label"),
    ("email", 'dkim_key = "missing.pem"', "settings.toml: [email].dkim_key"),
    ("bounces", 'host = "imap.example.org"', "settings.toml: [bounces].username is required when host is set"),
    ("bounces", 'soft_limit = 0', "settings.toml: [bounces].soft_limit must be at least 1"),
    ("bounces", 'every = "soon"', "settings.toml: [bounces].every"),
    ("bounces", 'security = "none"', "settings.toml: [bounces].security"),
    ("webhooks", 'sns_topic_arns = ["topic"]', "settings.toml: [webhooks].sns_topic_arns: 'topic' is not an SNS topic ARN"),
], ids=lambda v: v if len(v) < 30 else None)
def test_bad_setting_is_one_line_exit_2(project, table, text, words):
    settings = project.settings.read_text(encoding="utf-8")
    if f"[{table}]\n" in settings:
        settings = settings.replace(f"[{table}]\n", f"[{table}]\n{text}\n", 1)
    else:
        settings += f"\n[{table}]\n{text}\n"
    project.write_settings(settings)
    proc = project.cli("status")
    assert proc.returncode == 2, proc.stderr
    assert words in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
