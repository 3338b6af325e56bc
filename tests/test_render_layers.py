"""Template layers: campaign folder > user folder > stock, and `default:` to extend the stock template."""

from __future__ import annotations

from publisher.render.email import Renderer
from support.render_samples import article, campaign, edition, settings


def _render(tmp_path, **overrides):
    s = settings(tmp_path)
    c = campaign(**overrides)
    return Renderer(s).render(edition(c, [article(1), article(2)], s), c)


def test_stock_templates_without_overrides(tmp_path):
    r = _render(tmp_path)
    assert "Se désinscrire" in r.html and "À LA UNE" in r.text


def test_user_override_wins_over_stock(tmp_path):
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "email.txt").write_text("USER TEXT {{ edition.id }}\n", encoding="utf-8")
    r = _render(tmp_path)
    assert r.text == "USER TEXT 2026-W47\n"
    assert "Se désinscrire" in r.html  # email.html still stock


def test_user_override_can_extend_the_stock_template(tmp_path):
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "email.html").write_text(
        '{% extends "default:email.html" %}\n{% block footer %}<tr><td>PIED MAISON '
        '<a href="%%UNSUBSCRIBE_URL%%">Désabonnement</a></td></tr>{% endblock %}\n', encoding="utf-8")
    r = _render(tmp_path)
    assert "PIED MAISON" in r.html
    assert "Se désinscrire" not in r.html  # the stock footer block was replaced
    assert "WEC : la Toyota n°2" in r.html  # the rest is the stock layout
    assert "@media" in r.html


def test_campaign_folder_beats_user_folder(tmp_path):
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "email.txt").write_text("USER\n", encoding="utf-8")
    (tmp_path / "campaign-tpl").mkdir()
    (tmp_path / "campaign-tpl" / "email.txt").write_text("CAMPAIGN {{ campaign.name }}\n", encoding="utf-8")
    r = _render(tmp_path, templates="campaign-tpl")
    assert r.text == "CAMPAIGN endurance\n"
    other = _render(tmp_path)  # a campaign without its own folder still gets the user's
    assert other.text == "USER\n"


def test_post_templates_are_overridable_too(tmp_path):
    (tmp_path / "templates" / "posts").mkdir(parents=True)
    (tmp_path / "templates" / "posts" / "mastodon.txt").write_text(
        '{% extends "default:posts/mastodon.txt" %}{% block tags %}#Maison{% endblock %}', encoding="utf-8")
    r = _render(tmp_path)
    assert r.posts["mastodon"][0].text.endswith("#Maison")
    assert not r.posts["x"][0].text.endswith("#Maison")


def test_templates_never_see_raw_settings(tmp_path):
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "email.txt").write_text("{{ settings }}\n", encoding="utf-8")
    import pytest

    from publisher.errors import ConfigError
    with pytest.raises(ConfigError, match="'settings' is undefined"):
        _render(tmp_path)
