"""The `publisher` command: the only place that parses arguments, prints, and picks exit codes.

    main.py         argument parsing, logging, one error line and the exit code of the error class
    fetch_send.py   `fetch`, `send` (and `send --to` test copies)
    preview.py      `preview`
    subscribers.py  `subscribers import|export|count|remove`
    status.py       `status`
    schedule.py     `run`, `schedule`
    serve.py        `serve`
    db.py           `db version|upgrade|copy` (the store's schema; moving an SQLite store to PostgreSQL)

Everything below this folder returns values and raises PublisherError; nothing there prints.
"""

from publisher.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
