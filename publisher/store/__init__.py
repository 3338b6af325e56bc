"""⑤ The store: the only place with SQL (SQLite now).

    db.py           Store: the connection, transactions, articles, feed state, editions, leases, runs
    tables.py       the schema (version 1) and how a store from before versioning is brought up
    migrations.py   the versioned schema: numbered migrations for both backends, what opening a store does
    copy.py         `db copy`: an SQLite store's rows into an empty PostgreSQL store
    ledger.py       Ledger: one row per (edition, channel, target) and its state machine
    subscribers.py  subscribers, lists and the suppression list
    reports.py      the read-only queries `publisher status` and the scheduler ask

Every function here takes and returns values (dataclasses from publisher.models or this folder), never
sqlite3 rows.
"""
