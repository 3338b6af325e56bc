"""① Feeds -> Article: the only place that touches a feed (httpx, feedparser).

    fetch.py     download a source (http(s) or a local file) within its deadline and size, conditional GETs
    network.py   which addresses a public feed may reach; the one TLS context
    feeds.py     parse with feedparser, normalise, store; one bad source never stops the others
    entries.py   one feed entry -> Article (ids, links, dates, images, series hints)
    sanitize.py  URLs, one-line text, allow-listed HTML (nh3)
    excerpts.py  publisher boilerplate ("Lire la suite", "The post … appeared first on …") removed
"""
