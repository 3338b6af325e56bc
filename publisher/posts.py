"""Social post composition and each network's length rule.

Lengths, counted the way each network counts them:

- X: twitter-text v3 weighted length, limit 280. Code points in the light ranges weigh 1, everything
  else 2 (CJK, most emoji; an emoji sequence such as a ZWJ family or a flag counts once, as 2). Every
  http(s) URL counts 23. A bare domain ("endurance-info.com") may be turned into a link by X; we count
  it as max(its length, 23), which is never less than X's own count.
- Mastodon: grapheme clusters, every http(s) URL counts 23, `@user@instance` counts as `@user`; limit
  500 or `[mastodon].max_characters`.
- Bluesky: grapheme clusters of the text as written (links included), limit 300.

Composition never cuts a word, a hashtag or a link: it shortens the summary at a word boundary
(ending it with "…"), then drops it, then drops hashtags from the end, and only then moves the rest of
the text into the next post of the thread, splitting between words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import grapheme
from grapheme.grapheme_property_group import GraphemePropertyGroup, get_group

from publisher.config import Campaign, Settings
from publisher.models import Edition, Post

URL_LENGTH = 23  # t.co and Mastodon both count any link as 23 characters
X_LIMIT = 280
MASTODON_LIMIT = 500
BLUESKY_LIMIT = 300
MIN_SUMMARY_CHARS = 30  # a shortened summary shorter than this says nothing: drop it instead
ELLIPSIS = "…"

# twitter-text config v3: (start, end) code point ranges of weight 100 (= 1 char); default weight 200.
_X_LIGHT = ((0, 4351), (8192, 8205), (8208, 8223), (8242, 8247))
_URL = re.compile(r"https?://[^\s<>\"'«»]+", re.IGNORECASE)
_TRAILING = ".,;:!?)]}'\"»"  # punctuation right after a link is not part of it (twitter-text does the same)
_BARE_DOMAIN = re.compile(
    r"(?<![\w@#/.-])(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+(?:[a-z]{2}|com|net|org|info|biz|news|live"
    r"|racing|media|online|site|tv|app|dev|blog|io|co|xyz)(?![\w-])(?:/[^\s]*)?", re.IGNORECASE)
_MASTODON_MENTION = re.compile(r"(?<![\w/])@(\w+)@[\w.-]+\w", re.UNICODE)


def _urls(text: str) -> list[tuple[int, int]]:
    """Spans of the http(s) URLs in `text`, without trailing punctuation."""
    spans = []
    for m in _URL.finditer(text):
        end = m.end()
        while end > m.start() and text[end - 1] in _TRAILING:
            end -= 1
        spans.append((m.start(), end))
    return spans


def links_in(text: str) -> tuple[str, ...]:
    """Every http(s) URL in `text`, in order (what a network turns into a link)."""
    return tuple(text[a:b] for a, b in _urls(text))


def _is_light(cp: int) -> bool:
    return any(a <= cp <= b for a, b in _X_LIGHT)


def _is_emoji(cluster: str) -> bool:
    # Emoji presentation sequences count once, at the default weight, whatever their code points.
    first = cluster[0]
    group = get_group(first)
    if group in (GraphemePropertyGroup.EXTENDED_PICTOGRAPHIC, GraphemePropertyGroup.REGIONAL_INDICATOR):
        return True  # even © and ®, which twitter-text's emoji pattern matches
    return "\u20e3" in cluster  # keycaps: 1️⃣


# Fast paths (grapheme segmentation in pure Python is slow, and most French text never needs it):
# text with none of these characters weighs exactly len(text) on X ...
_X_HEAVY = re.compile("[^\x00-\u10ff\u2000-\u200d\u2010-\u201f\u2032-\u2037]|[\u00a9\u00ae]")
# ... and text made only of these has one grapheme cluster per code point (no marks, joiners, CR LF).
_SIMPLE = re.compile("[\n\t\u0020-\u007e\u00a0-\u02ff\u2010-\u2027\u2030-\u205e]*")


def _graphemes(text: str) -> int:
    return len(text) if _SIMPLE.fullmatch(text) else grapheme.length(text)


_EMOJI_GROUPS = (GraphemePropertyGroup.EXTENDED_PICTOGRAPHIC, GraphemePropertyGroup.REGIONAL_INDICATOR)


def _x_weight(text: str) -> int:
    if not _X_HEAVY.search(text):
        return len(text)
    if not any(c in "\u200d\ufe0f\u20e3" or get_group(c) in _EMOJI_GROUPS for c in text if ord(c) > 0xa8):
        return sum(1 if _is_light(ord(c)) else 2 for c in text)  # no emoji: weigh code points one by one
    weight = 0
    for cluster in grapheme.graphemes(text):
        if _is_emoji(cluster):
            weight += 2
        else:
            weight += sum(1 if _is_light(ord(c)) else 2 for c in cluster)
    return weight


def x_length(text: str) -> int:
    """The twitter-text v3 weighted length of `text` (280 max): URLs 23, CJK and emoji 2."""
    import unicodedata

    text = re.sub(r"\r\n|\r", "\n", unicodedata.normalize("NFC", text))  # twitter-text does the same
    total, pos = 0, 0
    for a, b in _urls(text):
        total += _x_plain(text[pos:a]) + URL_LENGTH
        pos = b
    return total + _x_plain(text[pos:])


def _x_plain(text: str) -> int:
    total, pos = 0, 0
    for m in _BARE_DOMAIN.finditer(text):
        total += _x_weight(text[pos:m.start()]) + max(len(m.group(0)), URL_LENGTH)
        pos = m.end()
    return total + _x_weight(text[pos:])


def mastodon_length(text: str) -> int:
    """Mastodon's count: grapheme clusters, http(s) URLs 23, `@user@instance` as `@user`."""
    total, pos = 0, 0
    for a, b in _urls(text):
        total += _mastodon_plain(text[pos:a]) + URL_LENGTH
        pos = b
    return total + _mastodon_plain(text[pos:])


def _mastodon_plain(text: str) -> int:
    return _graphemes(_MASTODON_MENTION.sub(lambda m: "@" + m.group(1), text))


def bluesky_length(text: str) -> int:
    """Bluesky's count: grapheme clusters of the text as written (300 max)."""
    return _graphemes(text)


LENGTHS = {"x": x_length, "mastodon": mastodon_length, "bluesky": bluesky_length}


def limit_for(network: str, settings: Settings | None = None) -> int:
    """The post limit of a network; Mastodon's comes from `[mastodon].max_characters` when set."""
    if network == "mastodon":
        channel = settings.channels.get("mastodon") if settings is not None else None
        return int(getattr(channel, "max_characters", MASTODON_LIMIT) or MASTODON_LIMIT)
    return {"x": X_LIMIT, "bluesky": BLUESKY_LIMIT}[network]


def length_of(network: str, text: str) -> int:
    """`text` counted by `network`'s rule."""
    return LENGTHS[network](text)


def shorten(text: str, max_chars: int) -> str:
    """`text` cut at a word boundary to at most `max_chars` characters, ending with "…"; never mid-word."""
    text = text.strip()
    if len(text) <= max_chars:
        return text
    cut = text[: max(0, max_chars - len(ELLIPSIS)) + 1]
    space = cut.rfind(" ")
    if space <= 0:
        return ""
    return cut[:space].rstrip(" ,;:.–—-") + ELLIPSIS


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
    """The posts of `edition` for `network` ("x", "mastodon", "bluesky") per the campaign's social mode."""
    from publisher.render import Renderer, base_context, make_items, template_errors

    social = campaign.social
    if social.mode == "none" or not edition.articles:
        return ()
    if env is None:
        env = Renderer(settings).environment(campaign)
    items = make_items(edition, campaign, settings, utm_source=network, utm_medium="social")
    ctx = base_context(edition, campaign, settings)
    limit = limit_for(network, settings)
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
        drafts.append(_Draft("lead", lead, hashtags_for(all_series, campaign, settings), mentions, link, card, lead.image))
        if social.mode == "thread":
            rest = items if use_web else items[1:]
            for item in rest[: social.thread_top]:
                drafts.append(_Draft("thread", item, (), (), item.url,
                                     _card(item.url, item.title, item.full_summary, item.image)))
    else:  # per_article
        for item in items:
            drafts.append(_Draft("article", item, hashtags_for(item.series_names, campaign, settings), (), item.url,
                                 _card(item.url, item.title, item.full_summary, item.image), item.image))
    posts: list[Post] = []
    name = f"posts/{network}.txt"
    for draft in drafts:
        with template_errors(env, name, campaign):  # a user's post template can have mistakes too
            texts = _fit(env.get_template(name), {**ctx, "network": network, "limit": limit}, draft, network, limit)
        for i, text in enumerate(texts):
            posts.append(Post(network=network, position=len(posts), text=text, length=length_of(network, text),
                              limit=limit, links=links_in(text), image=draft.image if i == 0 else None,
                              article_id=draft.item.article.id,
                              card=draft.card if network == "bluesky" and i == 0 and draft.card else None,
                              language=social.language))
    return tuple(posts)


def _card(uri: str | None, title: str, description: str, thumb: str | None) -> dict | None:
    if not uri:
        return None
    return {"uri": uri, "title": title, "description": shorten(description, 300), "thumb": thumb or ""}


def _render(template, ctx: dict, draft: _Draft, summary: str, hashtags: tuple[str, ...]) -> str:
    text = template.render({**ctx, "kind": draft.kind, "item": draft.item, "link": draft.link, "summary": summary,
                            "hashtags": hashtags, "mentions": draft.mentions})
    text = "\n".join(line.rstrip() for line in text.strip().splitlines())
    return re.sub(r"\n{3,}", "\n\n", text)


def _fit(template, ctx: dict, draft: _Draft, network: str, limit: int) -> list[str]:
    """The post text within `limit`: shorten the summary, drop it, drop hashtags, then split."""
    count = LENGTHS[network]
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
    return split_text(text, network, limit)


def split_text(text: str, network: str, limit: int) -> list[str]:
    """Split `text` into posts within `limit`, only between words (links and hashtags stay whole)."""
    count = LENGTHS[network]
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
