"""Campaign strings and template overrides run in Jinja's sandbox: no way to the environment or Python internals.

A subject, a preheader or a template file is text anyone who can edit the project may change; the
classic escapes (`cycler.__init__.__globals__.os.environ`, `self.__init__.__globals__`, a walk to
`__subclasses__`) must stop the render with one line, and the SMTP password must end up nowhere.
"""

from __future__ import annotations

import json

import pytest

from publisher.errors import ConfigError
from publisher.render.email import Renderer
from publisher.render.templates import typography
from support.email_project import NOW
from support.render_samples import article, campaign, edition, settings
from support.user_errors import edit, error_line

SECRET = "smtp-Pa55-never-in-a-template-0xC0FFEE"
FEED = "samples/feeds/endurance-info-2026-w46-w47.xml"
REFUSED = "refused by the template sandbox"

ESCAPES = [
    "{{ cycler.__init__.__globals__.os.environ.PUBLISHER_SMTP_PASSWORD }}",
    "{{ joiner.__init__.__globals__['os'].environ['PUBLISHER_SMTP_PASSWORD'] }}",
    "{{ namespace.__init__.__globals__.os.environ }}",
    "{{ lipsum.__globals__['os'].environ }}",
    "{{ self.__init__.__globals__.__builtins__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ campaign.__class__.__init__.__globals__ }}",
    "{{ edition.articles[0].__class__ }}",
    "{{ campaign | attr('__class__') }}",
    "{{ items | map(attribute='__class__') | list }}",
    "{{ '{0.__init__.__globals__}'.format(cycler) }}",
    "{{ dict.mro() }}",
    # quiet forms: Jinja alone would hand back an undefined and let these pass without a word
    "{{ cycler.__init__ | default('') }}",
    "{% if cycler.__init__ is defined %}yes{% endif %}",
    # the immutable sandbox: the lists given to templates are shared by every render of the edition
    "{{ items.pop() }}",
]


def _render(tmp_path, **overrides):
    s = settings(tmp_path)
    c = campaign(**overrides)
    return Renderer(s).render(edition(c, [article(1), article(2)], s), c)


@pytest.mark.parametrize("source", ESCAPES)
def test_every_escape_in_a_subject_is_refused(tmp_path, monkeypatch, source):
    monkeypatch.setenv("PUBLISHER_SMTP_PASSWORD", SECRET)
    with pytest.raises(ConfigError) as caught:
        _render(tmp_path, subject=f"Hebdo {source}")
    message = str(caught.value)
    assert message.startswith("endurance: subject: " + REFUSED + ": access to attribute '")
    assert "fix the subject template, then rerun 'publisher preview --campaign endurance'" in message
    assert SECRET not in message


@pytest.mark.parametrize("name", ["email.html", "email.txt", "posts/x.txt", "posts/post.txt"])
@pytest.mark.parametrize("source", [ESCAPES[0], ESCAPES[4], ESCAPES[5]])
def test_every_escape_in_a_template_file_is_refused(tmp_path, monkeypatch, name, source):
    monkeypatch.setenv("PUBLISHER_SMTP_PASSWORD", SECRET)
    path = tmp_path / "templates" / name
    path.parent.mkdir(parents=True)
    path.write_text(f"line one\n{source}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        _render(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"template {path} line 2: {REFUSED}: access to attribute '")
    assert SECRET not in message


def test_the_sandbox_keeps_what_templates_may_do(tmp_path):
    """Filters, globals, loops, `namespace`, `default:` and str.format on plain values still work."""
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "email.txt").write_text(
        '{% extends "default:email.txt" %}{% block footer %}'
        "{% set ns = namespace(n=0) %}{% for i in items %}{% set ns.n = ns.n + 1 %}{% endfor %}"
        "{{ ns.n }}|{{ cycler('a', 'b').next() }}|{{ '{}-{}'.format(edition.id, lead.title | one_line) }}"
        "|{{ publisher_name | de }}|{{ items | map(attribute='title') | first }}|{{ range(3) | list }}"
        "|{{ campaign.title | upper }}|{{ dict(a=1).items() | list }}|{{ lipsum(1, false, 5, 6) | length > 0 }}\n"
        "{% endblock %}", encoding="utf-8")
    r = _render(tmp_path, subject="{{ campaign.title }} – {{ '%s articles' % items | length }}")
    assert r.subject == "Endurance Hebdo – 2 articles"
    assert r.text.endswith("2|a|2026-W47-WEC : la Toyota n°2 s'impose à Bahreïn|d’Endurance-Info|"
                           "WEC : la Toyota n°2 s'impose à Bahreïn|[0, 1, 2]|ENDURANCE HEBDO|[('a', 1)]|True\n")
    assert "À LA UNE" in r.text  # the stock blocks around the override are still there


# -- the real command: `publisher preview` with hostile files and the password in its environment ----------


def _leaks(project, proc) -> list[str]:
    """Where SECRET shows up: the command's output, or any file of the project (preview bundle included)."""
    found = [name for name, text in (("stdout", proc.stdout), ("stderr", proc.stderr)) if SECRET in text]
    found += [str(p) for p in project.root.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    return found


HOSTILE_INTRO = "Bonjour {{ cycler.__init__.__globals__.os.environ.PUBLISHER_SMTP_PASSWORD }} !"


def _hostile_campaign(project, **keys: str) -> None:
    """endurance.toml with these keys replaced, and an intro that tries the same trick (an intro is plain text)."""
    path = project.root / "campaigns" / "endurance.toml"
    for key, value in {"intro": HOSTILE_INTRO, **keys}.items():
        edit(path, rf"^{key} = .*$", f"{key} = {json.dumps(value)}")  # a JSON string is a TOML basic string


@pytest.mark.parametrize(("where", "shown"), [
    ("subject", "campaigns/endurance.toml: subject: "),
    ("preheader", "campaigns/endurance.toml: preheader: "),
    ("templates/email.html", "templates/email.html line 2: "),
    ("templates/posts/mastodon.txt", "templates/posts/mastodon.txt line 2: "),
    ("campaign-templates/email.txt", "campaign-templates/email.txt line 2: "),
])
def test_preview_refuses_a_hostile_template_and_the_password_is_nowhere(project, where, shown):
    escape = "{{ self.__init__.__globals__.__builtins__.__import__('os').environ.PUBLISHER_SMTP_PASSWORD }}"
    if where in ("subject", "preheader"):
        _hostile_campaign(project, **{where: f"Hebdo {escape}"})
    else:
        _hostile_campaign(project)
        path = project.root / where
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{{# looks harmless #}}\n{escape}\n", encoding="utf-8")
        if where.startswith("campaign-templates/"):
            edit(project.root / "campaigns" / "endurance.toml", r"^title = ", 'templates = "campaign-templates"\ntitle = ')
    proc = project.cli("--now", NOW, "preview", "--feed", FEED, "--out", "out",
                       env={"PUBLISHER_SMTP_PASSWORD": SECRET})
    assert proc.returncode == 2, proc.stderr
    line = error_line(proc)
    assert f"{shown}{REFUSED}: access to attribute '__init__' of a 'TemplateReference' object" in line
    assert "rerun 'publisher preview --campaign endurance'" in line
    assert _leaks(project, proc) == []


def test_an_intro_is_text_not_a_template(project):
    """The intro is shown as written: its `{{ ... }}` is never evaluated, so it cannot reach anything either."""
    _hostile_campaign(project)
    proc = project.cli("--now", NOW, "preview", "--campaign", "endurance", "--feed", FEED, "--out", "out",
                       env={"PUBLISHER_SMTP_PASSWORD": SECRET})
    assert proc.returncode == 0, proc.stderr
    text = (project.root / "out" / "endurance" / "2026-W47" / "email.txt").read_text(encoding="utf-8")
    assert typography(HOSTILE_INTRO) in text  # shown as written, with French spacing before "!"
    assert _leaks(project, proc) == []
