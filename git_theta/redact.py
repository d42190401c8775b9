"""Secrets out of everything git-theta prints: one function for URLs, one for any text that may hold URLs.

Messages, progress lines, errors and crash logs end up in terminals and CI logs. A URL may carry a
password or token as userinfo (`https://user:token@host/...`) or as a query parameter (pre-signed
storage URLs: `?X-Amz-Signature=...`, `?sig=...`, `?token=...`). Userinfo is dropped whole (a token is
often the user name), and the value of any query parameter named in SECRET_QUERY_KEYS (case
insensitive) is replaced by REDACTED. An `Authorization:` header written into a text loses its value.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

REDACTED = "REDACTED"

# Query parameters that carry credentials: OAuth/bearer tokens, AWS SigV4 (S3), Azure SAS, GCS signed
# URLs, and the generic names servers use for pre-signed hrefs.
SECRET_QUERY_KEYS = frozenset(
    {
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "auth",
        "authorization",
        "jwt",
        "api_key",
        "apikey",
        "key",
        "secret",
        "password",
        "passwd",
        "pass",
        "pwd",
        "sig",
        "signature",
        "session",
        "sessionid",
        "code",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "x-goog-signature",
        "x-goog-credential",
        "googleaccessid",
        "se",
        "sp",
        "sv",
        "skoid",
        "sktid",
        "skt",
        "ske",
        "sks",
        "skv",  # Azure SAS (the token is spread over these)
    }
)

# scheme://userinfo@ ; userinfo may hold anything but '/', whitespace and '@' itself (it ends at the last '@'
# before the host, so `a@b:c@host` is caught whole).
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<userinfo>[^/\s?#]*@)")
_QUERY_PARAM = re.compile(r"(?P<lead>[?&;](?P<key>[A-Za-z0-9_.\-]+)=)(?P<value>[^&;#\s'\"<>]*)")
_AUTH_HEADER = re.compile(
    r"(?P<lead>\b(?:proxy-)?authorization['\"]?\s*[:=]\s*['\"]?)(?P<value>[^\r\n'\",}]+)", re.IGNORECASE
)


def url(value: str) -> str:
    """The URL for a message: no userinfo, secret query values REDACTED (not a URL: treated as text)."""
    try:
        parts = urlsplit(value)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:  # e.g. a port that is not a number: redact it as text
        return text(value)
    if not parts.scheme or not parts.netloc:
        return text(value)
    host = f"[{host}]" if ":" in host else host
    netloc = f"{host}:{port}" if port is not None else host
    return text(urlunsplit(parts._replace(netloc=netloc)))


def text(value: str) -> str:
    """Any text (a message, a repr, a traceback) with the secrets of every URL and Authorization header in it
    redacted."""
    value = _USERINFO.sub(lambda m: m["scheme"], value)
    value = _QUERY_PARAM.sub(lambda m: m["lead"] + REDACTED if m["key"].lower() in SECRET_QUERY_KEYS else m[0], value)
    return _AUTH_HEADER.sub(lambda m: m["lead"] + REDACTED, value)


def one_line(value: object, limit: int = 300) -> str:
    """Text from an untrusted source (a server's message) for a one-line error: redacted, control characters
    (newlines included: they would forge lines of our output) made visible, and at most `limit` characters."""
    cleaned = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(value))
    cleaned = text(cleaned)
    return cleaned if len(cleaned) <= limit else cleaned[:limit] + "..."
