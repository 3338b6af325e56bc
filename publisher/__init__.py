"""publisher: weekly newsletters and social posts from a news site's feed, sent exactly once."""

__version__ = "0.1.0"
