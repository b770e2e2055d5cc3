"""Text the database holds that is not valid UTF-8: read as a marker instead of failing the statement.

The SQLite driver decodes every TEXT value as UTF-8 while it fetches a row, and one value that
is not UTF-8 fails the whole statement, so every other row of the result is lost too. The
backend decodes text with `text_decode` instead: such a value arrives as an `UndecodableText`,
which is not a `str`, so a repository that expects text sees a row it cannot read, skips it and
serves the rest.
"""

from __future__ import annotations


class UndecodableText:
    """A TEXT value whose bytes are not UTF-8; never equal to a str, only to a marker of the same bytes."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"UndecodableText({self.data!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UndecodableText) and other.data == self.data

    def __hash__(self) -> int:
        return hash((UndecodableText, self.data))


def text_decode(data: bytes) -> str | UndecodableText:
    """The driver's text factory: the UTF-8 text, or a marker holding the bytes when they are not UTF-8."""
    try:
        return data.decode()
    except UnicodeDecodeError:
        return UndecodableText(data)
