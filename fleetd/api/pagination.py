"""Page tokens of the API's list endpoints, in the original's wire format.

A token is the URL-safe base64 (with padding) of two little-endian unsigned
16-bit integers: the page size (``token_limit``) and the 1-based page number.
Limit 100, page 2 is ``ZAACAA==``. A list without a token returns page 1.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

_TOKEN = struct.Struct("<HH")


class PageTokenError(ValueError):
    """A nextPageToken query value that is not a valid token of this server."""


@dataclass(frozen=True)
class PageToken:
    """A page of ``limit`` items, numbered from 1."""

    limit: int
    page: int

    def encode(self) -> str:
        return base64.urlsafe_b64encode(_TOKEN.pack(self.limit, self.page)).decode()

    def next(self) -> PageToken:
        return PageToken(self.limit, self.page + 1)


def decode_token(text: str) -> PageToken:
    """Decode a token; raise PageTokenError when it is not 4 bytes of base64."""
    try:
        data = base64.b64decode(text.encode("ascii"), altchars=b"-_", validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as err:
        raise PageTokenError(f"invalid page token {text!r}: not base64") from err
    if len(data) != _TOKEN.size:
        raise PageTokenError(
            f"invalid page token {text!r}: decodes to {len(data)} bytes, not 4"
        )
    limit, page = _TOKEN.unpack(data)
    return PageToken(limit, page)


def token_from_query(values: Sequence[str], limit: int) -> PageToken:
    """Return the page that the ``nextPageToken`` query values ask for.

    No value means the first page. Raises PageTokenError for several values,
    an undecodable token, a token of another page size, or page 0.
    """
    if not values:
        return PageToken(limit, 1)
    if len(values) > 1:
        raise PageTokenError("too many values for page token")
    token = decode_token(values[0])
    if token.limit != limit:
        raise PageTokenError(f"token limit must be {limit}")
    if token.page == 0:
        raise PageTokenError("page number must be greater than 0")
    return token


def page_of(items: Sequence[T], token: PageToken) -> tuple[Sequence[T], str | None]:
    """Return the items of the token's page and the next page's token.

    As in the original, a full page always gets a next token, so a last page
    that is exactly full leads to one more, empty, page.
    """
    start = (token.page - 1) * token.limit
    page = items[start : start + token.limit]
    next_token = token.next().encode() if len(page) == token.limit else None
    return page, next_token
