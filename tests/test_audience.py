"""Migration from other tools, and the reader's rights: `subscribers import` of Mailchimp, Brevo and listmonk
exports with their consent data, `subscribers show` and `subscribers forget`, through the real CLI."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from email import policy
from email.parser import BytesParser

from support.email_project import ENV, SECRET, send_args, store_path, suppressed
from support.user_errors import error_line
from support.web import local, request, serving
from publisher.web.tokens import Signer

IMPORTS = "samples/imports"


def _show(project, address: str) -> dict:
    proc = project.cli("subscribers", "show", address, "--json", env=ENV, check=True)
    return json.loads(proc.stdout)


def test_the_mailchimp_export_imports_with_its_consent_data(project):
    proc = project.cli("subscribers", "import", f"{IMPORTS}/mailchimp-subscribed.csv", "--list", "endurance", check=True)
    assert "mailchimp-subscribed.csv: 3 new, 0 updated, 0 unchanged, 0 rejected" in proc.stdout
    camille = _show(project, "camille.bernard@example.org")
    assert camille["subscriber"]["name"] == "Camille Bernard" and camille["lists"] == ["endurance"]
    [sub] = camille["subscriptions"]
    assert sub["list"] == "endurance" and sub["source"] == "import:mailchimp mailchimp-subscribed.csv" and sub["since"]
    [consent] = camille["consents"]
    assert consent | {"recorded_at": None} == {
        "kind": "opt-in", "lists": "endurance", "source": "import:mailchimp mailchimp-subscribed.csv",
        "ip": "198.51.100.23", "consent": None, "given_at": "2025-03-14 08:12:45", "confirmed_at": "2025-03-14 08:15:02",
        "confirm_ip": "198.51.100.23", "recorded_at": None}
    assert _show(project, "manon.durand@example.net")["consents"][0]["confirmed_at"] == "2023-06-10 12:00:00"
    # its unsubscribed and cleaned exports go to the suppression list, and stay there
    for name, line in (("unsubscribed", "1 added to the suppression list"), ("cleaned", "1 added to the suppression list")):
        proc = project.cli("subscribers", "import", f"{IMPORTS}/mailchimp-{name}.csv", check=True)
        assert line in proc.stdout
    assert suppressed(project) == {"hugo.moreau@example.org": "unsubscribed", "old.box@example.net": "hard-bounce"}
    detail = _show(project, "hugo.moreau@example.org")["suppression"][0]["detail"]
    assert detail == "import:mailchimp-unsubscribed mailchimp-unsubscribed.csv, 2025-09-01 07:30:00: NORMAL"
    again = project.cli("subscribers", "import", f"{IMPORTS}/mailchimp-subscribed.csv", "--list", "endurance", check=True)
    assert "0 new, 0 updated, 3 unchanged" in again.stdout
    assert len(_show(project, "camille.bernard@example.org")["consents"]) == 1  # a re-import proves nothing new


def test_brevo_and_listmonk_exports_map_their_columns_and_blocklists(project):
    for name in ("brevo-contacts", "listmonk-subscribers"):
        proc = project.cli("subscribers", "import", f"{IMPORTS}/{name}.csv", "--list", "wec", check=True)
        assert "2 new, 0 updated, 0 unchanged, 0 rejected, 1 added to the suppression list" in proc.stdout, proc.stdout
    ines = _show(project, "ines.roux@example.org")
    assert ines["subscriber"]["name"] == "Inès Roux"
    assert ines["consents"][0]["consent"] == "DOUBLE-OPT-IN=Yes; OPT-IN=Yes"
    assert ines["consents"][0]["given_at"] == "2025-05-20T18:03:11.000+02:00"
    assert _show(project, "nathan.lambert@example.org")["consents"][0]["source"] == "import:listmonk listmonk-subscribers.csv"
    assert suppressed(project) == {"sarah.girard@example.net": "unsubscribed", "spam.trap@example.net": "unsubscribed"}


def test_forget_erases_everywhere_and_keeps_a_suppressed_address_out_of_imports(project):
    project.cli("subscribers", "import", f"{IMPORTS}/mailchimp-subscribed.csv", "--list", "endurance", check=True)
    project.cli("fetch", check=True)
    project.cli(*send_args(), env=ENV, check=True)  # outbox mode: an .eml per subscriber
    who = "camille.bernard@example.org"
    eml = project.root / "var/outbox/endurance/2026-W47/email/camille.bernard@example.org.eml"
    assert eml.exists()
    one_click = BytesParser(policy=policy.default).parsebytes(eml.read_bytes())["List-Unsubscribe"].split(",")[0].strip("<> ")
    journal = project.root / "var/journal/endurance_2026-W47.email.log"  # as a live send that stopped would leave it
    journal.parent.mkdir(parents=True, exist_ok=True)
    journal.write_text(f"W\t{who}\nR\t{who}\tsent\t<id@x>\t250 ok\nW\tlucas.petit@example.com\n", encoding="utf-8")
    project.cli("subscribers", "remove", who, check=True)  # she had unsubscribed before asking to be forgotten
    before = _show(project, who)
    assert before["deliveries"] and before["consents"] and before["suppression"]

    proc = project.cli("subscribers", "forget", who, env=ENV, check=True)
    assert f"{who}: forgotten: subscriber row not found, 1 consent record(s), 0 sign-up(s), 1 ledger row(s)" in proc.stdout
    assert "2 journal line(s), 1 outbox file(s); kept on the suppression list as a keyed hash (manual)" in proc.stdout
    db = sqlite3.connect(store_path(project))
    dump = "\n".join(db.iterdump())
    db.close()
    assert who not in dump and "camille" not in dump.lower()  # nowhere in the store
    assert f"hash:{Signer(SECRET.encode()).hashed(who)}" in dump
    assert not eml.exists() and who not in journal.read_text(encoding="utf-8")
    assert "lucas.petit@example.com" in journal.read_text(encoding="utf-8")  # the others untouched
    after = _show(project, who)
    assert after["subscriber"] is None and not after["consents"] and not after["deliveries"]
    assert after["suppressed_as_forgotten"] == "manual"
    with serving(project) as (_, base):  # her old link names nobody now, and stores nothing
        assert request(local(one_click, base), b"List-Unsubscribe=One-Click")[0] == 400
    assert who not in suppressed(project)
    # the old export again: she is not brought back
    again = project.cli("subscribers", "import", f"{IMPORTS}/mailchimp-subscribed.csv", "--list", "endurance", env=ENV, check=True)
    assert "1 forgotten (not imported)" in again.stdout
    assert _show(project, who)["subscriber"] is None


def test_forget_and_show_need_a_valid_address_and_forget_its_secret(project):
    proc = project.cli("subscribers", "forget", "not an address", env=ENV)
    assert proc.returncode == 2 and "subscribers forget:" in error_line(proc)
    proc = project.cli("subscribers", "forget", "a@example.org")
    assert proc.returncode == 2 and "PUBLISHER_UNSUBSCRIBE_SECRET is not set" in error_line(proc)
    proc = project.cli("subscribers", "show", "nobody@example.org", check=True)
    assert "nobody@example.org: not a subscriber" in proc.stdout


def test_forget_waits_for_a_running_send_of_an_edition_that_mailed_the_address(project):
    """A send appends to its wire journal while forget rewrites it: a lost line is a message sent twice.
    So forget refuses while such a send holds its lease, erases nothing, and says what to run next."""
    project.cli("subscribers", "import", f"{IMPORTS}/mailchimp-subscribed.csv", "--list", "endurance", check=True)
    project.cli("fetch", check=True)
    project.cli(*send_args(), env=ENV, check=True)
    who = "camille.bernard@example.org"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from datetime import datetime, timezone;"
         " from publisher.store.db import Store; s = Store(sys.argv[1]);"
         " s.acquire_lease('send:endurance/2026-W47', datetime.now(timezone.utc)); print('held', flush=True);"
         " time.sleep(60)", str(store_path(project))], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        proc = project.cli("subscribers", "forget", who, env=ENV)
        assert proc.returncode == 5
        line = error_line(proc)
        assert "subscribers forget: a send of endurance/2026-W47 is running" in line and "nothing was erased" in line
        assert f"rerun 'publisher subscribers forget {who}' when it is done" in line
        assert _show(project, who)["deliveries"]  # untouched
    finally:
        holder.kill()
        holder.wait()
    project.cli("subscribers", "forget", who, env=ENV, check=True)  # the send is gone: the lease is free
    assert not _show(project, who)["deliveries"]
    db = sqlite3.connect(store_path(project))
    try:  # the per-state counts status reads still match the rows
        kept = dict(db.execute("SELECT state, n FROM delivery_counts WHERE edition_key = 'endurance/2026-W47'"
                               " AND channel = 'outbox:email'").fetchall())
        rows = dict(db.execute("SELECT state, count(*) FROM deliveries WHERE edition_key = 'endurance/2026-W47'"
                               " AND channel = 'outbox:email' GROUP BY state").fetchall())
    finally:
        db.close()
    assert {k: v for k, v in kept.items() if v} == rows and rows
