"""API token strings: their two Arvados forms, how secrets are made, hashed and compared.

Forms: `v2/<token uuid>/<secret>`, or the bare secret (Arvados's v1 form). Only the SHA-256
of a secret is stored. Secrets are 50 random base-36 characters (about 258 bits), so a fast
hash is enough: there is nothing to brute-force that a slow KDF would protect.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from jobtask.domain.resources import Access, Attr, Kind
from jobtask.domain.uuids import TOKEN_INFIX

__all__ = [
    "SECRET_LENGTH",
    "TOKEN_ATTRS",
    "ParsedToken",
    "digest",
    "digests_equal",
    "format_v2",
    "new_secret",
    "parse_token",
]

SECRET_LENGTH = 50
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_V2 = re.compile(r"^v2/([0-9a-z]{5}-" + TOKEN_INFIX + r"-[0-9a-z]{15})/(\S+)$")
# Anything longer is not a token of ours; refuse before hashing megabytes of metadata.
MAX_TOKEN_LENGTH = 512


@dataclass(frozen=True)
class ParsedToken:
    # Set for the v2 form: the token record to look up, then compare the secret with.
    uuid: str | None
    secret: str

    def __repr__(self) -> str:
        # Never print the secret, even by accident in a traceback or a log line.
        return f"ParsedToken(uuid={self.uuid!r}, secret=<{len(self.secret)} chars>)"


def parse_token(raw: str) -> ParsedToken | None:
    """Splits a presented token into its parts; None when it cannot be a token."""
    raw = raw.strip()
    if not raw or len(raw) > MAX_TOKEN_LENGTH or any(c.isspace() for c in raw):
        return None
    if raw.startswith("v2/"):
        found = _V2.match(raw)
        return ParsedToken(found.group(1), found.group(2)) if found else None
    return ParsedToken(None, raw)


def new_secret() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(SECRET_LENGTH))


def digest(secret: str) -> bytes:
    """What is stored instead of the secret."""
    return hashlib.sha256(secret.encode()).digest()


def digests_equal(a: bytes | None, b: bytes | None) -> bool:
    """Constant-time comparison, so response timing reveals nothing about a stored digest."""
    if a is None or b is None:
        return False
    return hmac.compare_digest(a, b)


def format_v2(uuid: str, secret: str) -> str:
    return f"v2/{uuid}/{secret}"


def _attrs() -> dict[str, Attr]:
    s, t, m = Kind.STRING, Kind.DATETIME, Access.MANAGER
    return {
        "uuid": Attr(s, m),
        "owner_uuid": Attr(s, m),
        "created_at": Attr(t, m),
        "modified_at": Attr(t, m),
        "modified_by_user_uuid": Attr(s, m),
        "modified_by_client_uuid": Attr(s, m, column=False),
        "etag": Attr(s, Access.IGNORED, column=False),
        "kind": Attr(s, Access.IGNORED, column=False),
        "href": Attr(s, Access.IGNORED, column=False),
        "api_token": Attr(s, m, column=False),
        # A JSON list: not filterable (Arvados's scopes filters are rarely used).
        "scopes": Attr(Kind.HASH, Access.CREATE, column=False),
        "expires_at": Attr(t, Access.CREATE),
        "revoked_at": Attr(t, m),
    }


# The ApiClientAuthorization resource's attributes, for list filters, order and select.
TOKEN_ATTRS: dict[str, Attr] = _attrs()
