"""⑤ The store: the only place with SQL, on SQLite (embedded) or PostgreSQL (shared by several machines).

    backend.py      the seam: one SQL text for both (PgConnection rewrites placeholders), the server's errors
    leases.py       named leases held while a process lives (flock on SQLite, advisory locks on PostgreSQL)
    db.py           Store: the connection, transactions, articles, feed state, editions, leases, runs
    tables.py       the schema (version 1) and how a store from before versioning is brought up
    migrations.py   the versioned schema: numbered migrations for both backends, what opening a store does
    copy.py         `db copy`: an SQLite store's rows into an empty PostgreSQL store
    ledger.py       Ledger: one row per (edition, channel, target), its state machine, senders sharing an edition
    subscribers.py  subscribers, lists and the suppression list
    audience.py     sign-ups, consent records, preferences, forgetting a person
    feedback.py     what the mail system said afterwards: bounces, complaints, return paths
    newsroom.py     admin users, sessions, approvals
    isotime.py      times as ISO text (the same sort order and values on both databases)

Every function here takes and returns values (dataclasses from publisher.models or this folder), never
database rows.
"""
