"""③ Edition -> RenderedEdition, pure: templates, the email, the posts per network, lint.

    templates.py  the layered, sandboxed Jinja environment and what every template receives
    email.py      Renderer: subject, preheader, HTML with inlined CSS, text, posts, lint
    posts.py      social posts, fitted to the length rule and limit each channel declares
    lint.py       the email's lint checks
"""
