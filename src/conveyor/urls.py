"""A store URL as it may be shown: in logs, errors and the CLI's tables.

A password in a URL (``redis://:secret@host`` or ``redis://user:secret@host``)
is never printed; it is shown as ``***``.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def shown(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
    except ValueError:  # not a URL one can read: show no part that may be secret
        return url.rpartition("@")[2] if "@" in url else url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
