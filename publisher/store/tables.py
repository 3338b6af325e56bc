"""The tables of the store (version 1 of its schema), and how a store made before versioning is brought up.

Version 1 of the versioned schema (publisher/store/migrations.py) is what this module creates: on SQLite
`migrate(conn)`, on PostgreSQL `create_postgres(conn)`, the one schema text below with SQLite's types
spelled for PostgreSQL and the delivery counts kept by a plpgsql trigger function. Both are idempotent
(CREATE ... IF NOT EXISTS), so an SQLite store made before versioning is brought up by the same `migrate`
that always ran on open (indexes and columns added since it was created) and is then stamped version 1.
Version 1 is frozen: a new table, column or index is a new migration at the end of migrations.MIGRATIONS
(a store already at version 1 would never see an edit made here).
"""

from __future__ import annotations

import logging
import re
import sqlite3

log = logging.getLogger("publisher")

SCHEMA = """
CREATE TABLE IF NOT EXISTS articles (
    id TEXT PRIMARY KEY,
    link TEXT NOT NULL,
    title TEXT NOT NULL,
    summary TEXT NOT NULL,
    summary_html TEXT NOT NULL DEFAULT '',
    published TEXT NOT NULL,          -- ISO 8601, UTC
    source TEXT NOT NULL DEFAULT '',
    image TEXT,
    thumbnail TEXT,                   -- a small size of the image, when the feed offers one
    author TEXT,
    categories TEXT NOT NULL DEFAULT '[]',
    content_hash TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS articles_published ON articles(published);
CREATE UNIQUE INDEX IF NOT EXISTS articles_link ON articles(link);

CREATE TABLE IF NOT EXISTS feed_state (
    source TEXT PRIMARY KEY,
    etag TEXT,
    last_modified TEXT,
    last_fetch TEXT,
    last_result TEXT,                 -- one line: "12 new, 3 updated, ..." or the error
    ok INTEGER NOT NULL DEFAULT 1
);

CREATE TABLE IF NOT EXISTS editions (
    campaign TEXT NOT NULL,
    edition_id TEXT NOT NULL,
    status TEXT NOT NULL,             -- frozen | skipped
    reason TEXT,                      -- why it was skipped
    content_hash TEXT,
    rendered TEXT,                    -- JSON of the frozen RenderedEdition
    created_at TEXT NOT NULL,
    PRIMARY KEY (campaign, edition_id)
);

CREATE TABLE IF NOT EXISTS subscribers (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,       -- normalised: domain lower-cased
    name TEXT NOT NULL DEFAULT '',
    locale TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
-- One row per import run, confirmed sign-up or preferences change: what a subscription came from. A
-- subscription names its origin by number, so a million imported rows do not each repeat the file name.
-- (Created before subscriptions: PostgreSQL checks a REFERENCES when the table is created.)
CREATE TABLE IF NOT EXISTS origins (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,             -- "import subs.csv", "import:mailchimp members.csv", "form:endurance", "preferences page"
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS subscriptions (
    subscriber_id INTEGER NOT NULL REFERENCES subscribers(id) ON DELETE CASCADE,
    list TEXT NOT NULL,               -- a campaign's list name or a series name
    origin INTEGER REFERENCES origins(id),  -- where and when it came from (the consents table holds fuller proof)
    PRIMARY KEY (subscriber_id, list)
);
CREATE INDEX IF NOT EXISTS subscriptions_list ON subscriptions(list);
CREATE TABLE IF NOT EXISTS suppression (
    email TEXT PRIMARY KEY,           -- or "hash:<hex>" for a forgotten address (keyed HMAC, see web/tokens.py)
    reason TEXT NOT NULL,             -- unsubscribed | hard-bounce | complaint | manual
    detail TEXT,
    created_at TEXT NOT NULL
);

-- The proof of consent: one row per opt-in (form, import) and per opt-out (unsubscribe, preferences).
CREATE TABLE IF NOT EXISTS consents (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL,
    kind TEXT NOT NULL,               -- opt-in | opt-out
    lists TEXT NOT NULL,              -- ';'-separated list names ("*" for all)
    source TEXT NOT NULL,             -- "form:endurance", "import:mailchimp members.csv", "one-click", ...
    ip TEXT,                          -- where the opt-in came from (truncated when [web].truncate_ip)
    consent TEXT,                     -- the version (hash) of the consent text shown, or the import's own field
    given_at TEXT,                    -- when the person subscribed (the form, or the export's OPTIN_TIME)
    confirmed_at TEXT,                -- when the confirmation link was followed (or the export's CONFIRM_TIME)
    confirm_ip TEXT,
    recorded_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS consents_email ON consents(email);

-- Sign-ups waiting for their confirmation link (double opt-in); `id` is the random part of the link.
CREATE TABLE IF NOT EXISTS signups (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    lists TEXT NOT NULL,              -- ';'-separated
    locale TEXT NOT NULL DEFAULT '',
    form TEXT NOT NULL,               -- the form it came from ("endurance", "embed", ...)
    ip TEXT,
    consent TEXT NOT NULL,            -- the version (hash) of the consent text shown
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    confirmed_at TEXT
);
CREATE INDEX IF NOT EXISTS signups_email ON signups(email, created_at);

CREATE TABLE IF NOT EXISTS deliveries (
    edition_key TEXT NOT NULL,        -- "campaign/2026-W47"
    channel TEXT NOT NULL,            -- "email", "x", "outbox:email", ...
    target TEXT NOT NULL,             -- email address or "post:N"
    state TEXT NOT NULL,              -- planned | sending | sent | failed | unknown
    remote_id TEXT,
    reply TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before TEXT,                  -- retry after (4xx backoff, 429 reset)
    updated_at TEXT NOT NULL,
    holder TEXT,                      -- the sender that claimed it; its lease "sender:<holder>" says if it lives
    PRIMARY KEY (edition_key, channel, target)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deliveries_state ON deliveries(edition_key, channel, state);
-- Partial indexes: each holds only the rows its queries ask for, so its cost does not grow with the
-- history of other rows, and a write pays for it only when a row enters or leaves that state.
-- Social pacing (last post of an account, its posts of the last 24 h): a few steps down this index.
CREATE INDEX IF NOT EXISTS deliveries_sent ON deliveries(channel, state, updated_at) WHERE state = 'sent';
-- Status: failures grouped by reason, and the first addresses of each, without reading the table.
CREATE INDEX IF NOT EXISTS deliveries_failed ON deliveries(edition_key, channel, state, reply) WHERE state = 'failed';
-- Scheduler and status: planned rows held back until a retry time (4xx backoff, 429 reset, pacing).
CREATE INDEX IF NOT EXISTS deliveries_waiting ON deliveries(edition_key, channel, state, not_before)
    WHERE state = 'planned' AND not_before IS NOT NULL;

CREATE TABLE IF NOT EXISTS runs (
    edition_key TEXT NOT NULL,
    channel TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    outcome TEXT,                     -- ok | stopped | disabled: why | error: why | crashed: why
    seconds REAL,                     -- measured on a monotonic clock (right even under --now)
    summary TEXT,                     -- the channel's report line
    PRIMARY KEY (edition_key, channel, started_at)
);

CREATE TABLE IF NOT EXISTS scheduler_state (
    name TEXT PRIMARY KEY,            -- "last_tick", "last_error", ...
    value TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,            -- "send:endurance/2026-W47", "scheduler"
    holder TEXT NOT NULL,             -- "pid 1234 on host"
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    acquired_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
"""

# issue 11: reports from the mail system after a send (publisher/store/feedback.py)
FEEDBACK_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    source TEXT NOT NULL,             -- the report's own id: "mail:<Message-ID>", "ses:<id>", ...
    email TEXT NOT NULL,
    edition_key TEXT,                 -- NULL when the report does not say (some webhooks)
    kind TEXT NOT NULL,               -- hard-bounce | soft-bounce | complaint | unsubscribed
    detail TEXT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (source, email, kind)
);
CREATE INDEX IF NOT EXISTS feedback_edition ON feedback(edition_key, kind);
CREATE INDEX IF NOT EXISTS feedback_email ON feedback(email, kind);
CREATE TABLE IF NOT EXISTS return_paths (
    id INTEGER PRIMARY KEY,
    edition_key TEXT NOT NULL UNIQUE
);
"""

# issue 12: the admin area's users and sessions, and who approved, held or released an edition (store/newsroom.py)
NEWSROOM_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    email TEXT PRIMARY KEY,           -- the login, and where "send a test to me" and approval requests go
    role TEXT NOT NULL,               -- viewer | editor
    password TEXT NOT NULL,           -- argon2id hash
    failures INTEGER NOT NULL DEFAULT 0,  -- failed logins in a row
    locked_until TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,              -- sha256 of the cookie value
    email TEXT NOT NULL REFERENCES users(email) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS approvals (
    id INTEGER PRIMARY KEY,
    campaign TEXT NOT NULL,
    edition_id TEXT NOT NULL,
    action TEXT NOT NULL,             -- approve | hold | release
    who TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS approvals_edition ON approvals(campaign, edition_id, id);
"""


def migrate(conn: sqlite3.Connection) -> None:
    """Create missing tables and indexes, and add columns newer versions introduced (inside a transaction too)."""
    have = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    missing = [name for name in re.findall(r"CREATE INDEX IF NOT EXISTS (deliveries_\w+)", SCHEMA) if name not in have]
    if missing and "deliveries_state" in have and conn.execute("SELECT 1 FROM deliveries LIMIT 1").fetchone():
        # an older store with a ledger: building an index reads every row once (about 5 s per million)
        log.info("store: adding the ledger indexes %s, once; a large ledger takes a minute", ", ".join(missing))
    for statement in statements(SCHEMA + FEEDBACK_SCHEMA + NEWSROOM_SCHEMA):
        conn.execute(statement)
    _add_missing_columns(conn, "runs", {"outcome": "TEXT", "seconds": "REAL", "summary": "TEXT"})
    _add_missing_columns(conn, "articles", {"thumbnail": "TEXT"})
    _add_missing_columns(conn, "subscriptions", {"origin": "INTEGER"})
    _add_missing_columns(conn, "deliveries", {"holder": "TEXT"})
    _count_deliveries(conn)


def statements(script: str) -> list[str]:
    """An SQLite script as single statements: executescript would COMMIT the migration's transaction first."""
    out, pending = [], ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):  # SQLite's own tokenizer: a `;` in a comment or a trigger body is no end
            out.append(pending.strip())
            pending = ""
    out.append(pending[:-1].strip())  # a last statement without its `;` (or only comments)
    return [s for s in out if any(line.strip(" ;") and not line.strip().startswith("--") for line in s.splitlines())]


# How many rows of each edition and channel are in each state, kept by the ledger's own writes through
# triggers: `publisher status` reads a handful of numbers instead of counting a million index entries
# (about 0.1 s at a million rows), and a write pays for one small upsert per row that changes state.
COUNTS = (
    """CREATE TABLE delivery_counts (
    edition_key TEXT NOT NULL,
    channel TEXT NOT NULL,
    state TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (edition_key, channel, state)
) WITHOUT ROWID""",
    """CREATE TRIGGER deliveries_counted_insert AFTER INSERT ON deliveries BEGIN
    INSERT INTO delivery_counts VALUES (new.edition_key, new.channel, new.state, 1)
        ON CONFLICT DO UPDATE SET n = n + 1;
END""",
    """CREATE TRIGGER deliveries_counted_delete AFTER DELETE ON deliveries BEGIN
    UPDATE delivery_counts SET n = n - 1
        WHERE edition_key = old.edition_key AND channel = old.channel AND state = old.state;
END""",
    """CREATE TRIGGER deliveries_counted_update AFTER UPDATE OF edition_key, channel, state ON deliveries
WHEN old.state IS NOT new.state OR old.edition_key IS NOT new.edition_key OR old.channel IS NOT new.channel BEGIN
    UPDATE delivery_counts SET n = n - 1
        WHERE edition_key = old.edition_key AND channel = old.channel AND state = old.state;
    INSERT INTO delivery_counts VALUES (new.edition_key, new.channel, new.state, 1)
        ON CONFLICT DO UPDATE SET n = n + 1;
END""",
)


def _count_deliveries(conn: sqlite3.Connection) -> None:
    """Create delivery_counts and its triggers, counting the rows a store made by an older version has."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'delivery_counts'").fetchone():
        return
    own = not conn.in_transaction
    if own:
        conn.execute("BEGIN IMMEDIATE")  # the table, its triggers and its first counts appear together
    try:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'delivery_counts'").fetchone():
            for statement in COUNTS:
                conn.execute(statement)
            conn.execute("INSERT INTO delivery_counts SELECT edition_key, channel, state, count(*) FROM deliveries"
                         " GROUP BY edition_key, channel, state")
        if own:
            conn.execute("COMMIT")
    except BaseException:
        if own and conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


# The SQLite schema text, spelled for PostgreSQL: 64-bit integers, identity keys where SQLite has its
# INTEGER PRIMARY KEY alias of rowid, no WITHOUT ROWID, doubles; `runs` gets the id SQLite reads as rowid.
_PG_SPELLING = ((" WITHOUT ROWID", ""), ("INTEGER PRIMARY KEY", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
                (" INTEGER", " BIGINT"), (" REAL", " DOUBLE PRECISION"),
                ("CREATE TABLE IF NOT EXISTS runs (\n", "CREATE TABLE IF NOT EXISTS runs (\n    id BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,\n"))

PG_COUNTS = """
CREATE TABLE IF NOT EXISTS delivery_counts (
    edition_key TEXT NOT NULL,
    channel TEXT NOT NULL,
    state TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (edition_key, channel, state)
);
CREATE OR REPLACE FUNCTION deliveries_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Once per statement, from its transition tables: the rows it changed, summed per (edition, channel,
    -- state), make one upsert per counts row instead of one per ledger row (a claim of 256 rows: 2).
    -- One writer of an edition's counts at a time, until it commits, locks taken in key order: two senders
    -- move rows between the same few counts rows in different orders (a claim planned->sending, a 4xx
    -- sending->planned), which would deadlock on those rows. Ledger transactions are short, so is the wait.
    IF TG_OP = 'INSERT' THEN
        PERFORM pg_advisory_xact_lock(hashtextextended('counts:' || k, 0))
            FROM (SELECT DISTINCT edition_key || '/' || channel AS k FROM new_rows ORDER BY 1) AS x;
        INSERT INTO delivery_counts SELECT edition_key, channel, state, count(*) FROM new_rows
            GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
            ON CONFLICT (edition_key, channel, state) DO UPDATE SET n = delivery_counts.n + excluded.n;
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM pg_advisory_xact_lock(hashtextextended('counts:' || k, 0))
            FROM (SELECT DISTINCT edition_key || '/' || channel AS k FROM old_rows ORDER BY 1) AS x;
        INSERT INTO delivery_counts SELECT edition_key, channel, state, -count(*) FROM old_rows
            GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
            ON CONFLICT (edition_key, channel, state) DO UPDATE SET n = delivery_counts.n + excluded.n;
    ELSE
        PERFORM pg_advisory_xact_lock(hashtextextended('counts:' || k, 0))
            FROM (SELECT edition_key || '/' || channel AS k FROM old_rows
                  UNION SELECT edition_key || '/' || channel FROM new_rows ORDER BY 1) AS x;
        INSERT INTO delivery_counts SELECT edition_key, channel, state, sum(d) FROM
            (SELECT edition_key, channel, state, -1 AS d FROM old_rows
             UNION ALL SELECT edition_key, channel, state, 1 FROM new_rows) AS u
            GROUP BY 1, 2, 3 HAVING sum(d) <> 0 ORDER BY 1, 2, 3
            ON CONFLICT (edition_key, channel, state) DO UPDATE SET n = delivery_counts.n + excluded.n;
    END IF;
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS deliveries_counted ON deliveries;
CREATE OR REPLACE TRIGGER deliveries_counted_insert AFTER INSERT ON deliveries
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION deliveries_count();
CREATE OR REPLACE TRIGGER deliveries_counted_delete AFTER DELETE ON deliveries
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION deliveries_count();
-- (a trigger with transition tables cannot name columns: every UPDATE runs it; unchanged states sum to 0)
CREATE OR REPLACE TRIGGER deliveries_counted_update AFTER UPDATE ON deliveries
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION deliveries_count();
"""

def postgres_schema() -> str:
    """The tables and indexes of SCHEMA, FEEDBACK_SCHEMA and NEWSROOM_SCHEMA for PostgreSQL."""
    text = SCHEMA + FEEDBACK_SCHEMA + NEWSROOM_SCHEMA
    for sqlite_form, pg_form in _PG_SPELLING:
        text = text.replace(sqlite_form, pg_form)
    return text


def create_postgres(conn) -> None:
    """Create the tables, indexes and count triggers of a PostgreSQL store (a backend.PgConnection, in a transaction)."""
    counted = conn.execute("SELECT to_regclass('delivery_counts') IS NOT NULL").fetchone()[0]
    conn.execute(postgres_schema())
    conn.execute(PG_COUNTS)
    if not counted:  # rows written before the counts existed (a store filled by an older build)
        conn.execute("INSERT INTO delivery_counts SELECT edition_key, channel, state, count(*) FROM deliveries"
                     " GROUP BY edition_key, channel, state")


def _add_missing_columns(conn: sqlite3.Connection, table: str, columns: dict[str, str]) -> None:
    """Stores created by an older version get the newer columns (all nullable)."""
    have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
    for name, kind in columns.items():
        if name not in have:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
