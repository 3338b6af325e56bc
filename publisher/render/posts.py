"""Social post composition, for any network in the channel registry.

How a post is counted, its limit and whether it carries a link card are declared by the network's
channel module (`PostRules` on its ChannelSpec); nothing here knows a network by name. The post template
is `posts/<network>.txt`, or the shared `posts/post.txt` for a network without its own.

Composition never cuts a word, a hashtag or a link: it shortens the summary at a word boundary
(ending it with "…"), then drops it, then drops hashtags from the end, and only then moves the rest of
the text into the next post of the thread, splitting between words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Callable

from publisher.channels import registry
from publisher.channels.counting import links_in, url_spans
from publisher.config import Campaign, Settings
from publisher.models import Edition, Post
from publisher.render.templates import ELLIPSIS, base_context, environment, make_items, shorten, template_errors

MIN_SUMMARY_CHARS = 30  # a shortened summary shorter than this says nothing: drop it instead


def length_of(network: str, text: str) -> int:
    """`text` counted by the rule `network`'s channel module declares."""
    return registry.post_rules(network).length(text)


def limit_for(network: str, settings: Settings | None = None) -> int:
    """The post limit `network`'s channel module declares, or its settings' override (e.g. [mastodon].max_characters)."""
    return registry.post_rules(network).limit_in(settings.channels.get(network) if settings is not None else None)


# -- composition ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Draft:
    kind: str  # "lead", "thread", "article"
    item: object  # render.Item
    hashtags: tuple[str, ...]
    mentions: tuple[str, ...] = ()
    link: str | None = None
    card: dict | None = field(default=None, hash=False)
    image: str | None = None
    images: tuple[str, ...] = ()  # a carousel's images, when the network shows a thread as one


def _tag(text: str) -> str:
    text = re.sub(r"\s+", "", text.strip())
    return text if text.startswith("#") else "#" + text


def _handle(text: str) -> str:
    text = text.strip()
    return text if text.startswith("@") else "@" + text


def _dedupe(tags) -> tuple[str, ...]:
    seen, out = set(), []
    for t in tags:
        if t and t.casefold() not in seen and t not in ("#", "@"):
            seen.add(t.casefold())
            out.append(t)
    return tuple(out)


def hashtags_for(series_names, campaign: Campaign, settings: Settings) -> tuple[str, ...]:
    """Hashtags of the given series (in the campaign's series order), then the campaign's own."""
    present = set(series_names)
    tags = [_tag(h) for s in campaign.series if s in present and s in settings.series for h in settings.series[s].hashtags]
    return _dedupe([*tags, *(_tag(h) for h in campaign.hashtags)])


def compose(edition: Edition, campaign: Campaign, network: str, settings: Settings, env=None) -> tuple[Post, ...]:
    """The posts of `edition` for the social `network` ("x", "mastodon", ...) per the campaign's social mode."""
    social = campaign.social
    if social.mode == "none" or not edition.articles:
        return ()
    if env is None:
        env = environment(settings, campaign)
    items = make_items(edition, campaign, settings, utm_source=network, utm_medium="social")
    ctx = base_context(edition, campaign, settings)
    rules = registry.post_rules(network)
    limit = rules.limit_in(settings.channels.get(network))
    mentions = _dedupe(_handle(m) for m in social.mentions)
    drafts: list[_Draft] = []
    if social.mode in ("lead", "thread"):
        lead = items[0]
        all_series = {s for names in edition.series.values() for s in names}
        web = ctx["web_version_url"]
        use_web = social.link == "web_version" and web
        link = web if use_web else (lead.url or web or ctx["site_url"])
        card = (_card(link, f"{campaign.title} – {ctx['edition_label']}", campaign.intro, lead.image) if use_web
                else _card(link, lead.title, lead.full_summary, lead.image))
        tags = hashtags_for(all_series, campaign, settings)
        rest = (items if use_web else items[1:])[: social.thread_top] if social.mode == "thread" else []
        images: tuple[str, ...] = ()
        if rules.thread == "carousel" and rest:
            images = tuple(dict.fromkeys(i.image for i in [lead, *rest] if i.image))[: rules.max_images]
            images = images if len(images) > 1 else ()
        drafts.append(_Draft("lead", lead, tags, mentions, link, card, lead.image, images))
        if rules.thread == "replies":
            for item in rest:
                drafts.append(_Draft("thread", item, (), (), item.url,
                                     _card(item.url, item.title, item.full_summary, item.image)))
    else:  # per_article
        for item in items:
            drafts.append(_Draft("article", item, hashtags_for(item.series_names, campaign, settings), (), item.url,
                                 _card(item.url, item.title, item.full_summary, item.image), item.image))
    posts: list[Post] = []
    name = f"posts/{network}.txt"

    def shown(text: str) -> str:
        """The text as the network shows it (links shortened where it shortens them)."""
        return _show_links(text, rules.link_text) if rules.link_text else text

    def count(text: str) -> int:
        return rules.length(shown(text))

    for draft in drafts:
        if rules.max_hashtags:
            draft = replace(draft, hashtags=draft.hashtags[: rules.max_hashtags])
        with template_errors(env, name, campaign):  # a user's post template can have mistakes too
            template = env.select_template([name, "posts/post.txt"])
            texts = _fit(template, {**ctx, "network": network, "limit": limit}, draft, count, limit)
        for i, text in enumerate(texts):
            posts.append(Post(network=network, position=len(posts), text=shown(text), length=count(text),
                              limit=limit, links=links_in(text), image=draft.image if i == 0 else None,
                              article_id=draft.item.article.id,
                              card=draft.card if rules.card and i == 0 and draft.card else None,
                              language=social.language, images=draft.images if i == 0 else ()))
    return tuple(posts)


def _show_links(text: str, link_text: Callable[[str], str]) -> str:
    """`text` with each http(s) link replaced by the form the network shows."""
    out, pos = [], 0
    for a, b in url_spans(text):
        out.append(text[pos:a] + link_text(text[a:b]))
        pos = b
    return "".join(out) + text[pos:]


def _card(uri: str | None, title: str, description: str, thumb: str | None) -> dict | None:
    if not uri:
        return None
    return {"uri": uri, "title": title, "description": shorten(description, 300), "thumb": thumb or ""}


def _render(template, ctx: dict, draft: _Draft, summary: str, hashtags: tuple[str, ...]) -> str:
    text = template.render({**ctx, "kind": draft.kind, "item": draft.item, "link": draft.link, "summary": summary,
                            "hashtags": hashtags, "mentions": draft.mentions})
    text = "\n".join(line.rstrip() for line in text.strip().splitlines())
    return re.sub(r"\n{3,}", "\n\n", text)


def _fit(template, ctx: dict, draft: _Draft, count: Callable[[str], int], limit: int) -> list[str]:
    """The post text within `limit` as `count` measures it: shorten the summary, drop it, drop hashtags, then split."""
    words = draft.item.full_summary.split()
    tags = draft.hashtags

    def attempt(k: int, n_tags: int) -> str:
        summary = " ".join(words[:k]) + (ELLIPSIS if 0 < k < len(words) else "")
        if k < len(words) and k:
            summary = re.sub(r"[ ,;:.–—-]+…$", ELLIPSIS, summary)
        return _render(template, ctx, draft, summary, tags[:n_tags])

    text = attempt(len(words), len(tags))
    if count(text) <= limit:
        return [text]
    # The longest summary (in whole words) that fits with every hashtag: binary search on the word count.
    lo, hi = 0, len(words)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(attempt(mid, len(tags))) <= limit:
            lo = mid
        else:
            hi = mid - 1
    if lo > 0 and len(" ".join(words[:lo])) >= MIN_SUMMARY_CHARS:
        return [attempt(lo, len(tags))]
    for n in range(len(tags), -1, -1):
        text = attempt(0, n)
        if count(text) <= limit:
            return [text]
    return split_text(text, network=None, limit=limit, count=count)


def split_text(text: str, network: str | None, limit: int, count: Callable[[str], int] | None = None) -> list[str]:
    """Split `text` into posts within `limit`, only between words (links and hashtags stay whole).

    Lengths are counted by `count`, or else by the rule of `network`'s channel."""
    count = count or registry.post_rules(network).length
    parts = re.split(r"(\s+)", text)
    chunks: list[str] = []
    current = ""
    for i in range(0, len(parts), 2):
        word, sep = parts[i], parts[i + 1] if i + 1 < len(parts) else ""
        candidate = current + word
        if current and count(candidate) > limit:
            chunks.append(current.rstrip())
            current = word + sep
        else:
            current = candidate + sep
    if current.strip():
        chunks.append(current.rstrip())
    return chunks or [text]
