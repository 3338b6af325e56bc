"""`publisher serve`: an ASGI application (Starlette on uvicorn) facing the internet behind a reverse proxy.

    app.py          create_app: the areas' routes behind one guard
    context.py      Web: what every handler uses (settings, campaigns, pages, signer, clock, the store's thread)
    security.py     the guard (body limit, deadline, bounded concurrency, access log), rate limits, CSRF, honeypot
    server.py       uvicorn's settings, with a deadline on every request's arrival
    pages.py        Jinja2 pages and mails in templates/, translated from the "web" catalogue
    unsubscribe.py  one-click unsubscribe from one campaign, the preferences page
    signup.py       the sign-up form, double opt-in, confirmation
    tokens.py       opaque signed links, confirmation and form tokens, the keyed hash of forgotten addresses
    admin.py        the newsroom: login (argon2, sessions, CSRF, lock-out), review, test, approve/hold/release
    dashboard.py    figures per campaign and edition, charts drawn by Chart.js (vendored in static/)
    archive.py      the public archive: web versions without personal data, indexes, Atom feeds (also static)
"""
