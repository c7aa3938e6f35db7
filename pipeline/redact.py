"""Secrets out of any text we keep (results, journal, logs, crash reports): one scrubber for all.

A whole secret is not the only leak. A server may echo the request and cut its own body in
the middle of the API key, or echo it JSON-escaped (`key\\u002d...`), percent-encoded, or
split across lines. So `scrub`:

1. reads JSON escapes (`\\uXXXX`, and `\\/` as PHP's json_encode writes every `/`, `\\"`...)
   and then `%XX` escapes (as UTF-8) first: where it masks something, the text kept is the
   decoded one; a text holding nothing of a secret is kept as it came;
2. masks every whole secret, as given and as the same decoding reads it (a secret holding `%2F`
   or `\\/` of its own is kept decoded too), in any letter case (a gateway that upper-cases what
   it echoes still echoes the key);
3. masks every run of text made of `FRAGMENT`-character (8) pieces of a secret (a secret cut
   at either end, or a piece from its middle);
4. masks a shorter piece of a secret (at least `EDGE` characters) standing at either end of
   the text, where a cut made it: `...api_key=key-QW` keeps nothing of the key.

Pieces shorter than that stay: a 7-character run of a 40-character key tells an attacker
little, while masking every short word a secret happens to contain (the API's own "Invalid
developer_secret" against a secret like `zdk_secret_987`) would garble the messages. The
API's error messages are matched to codes before they are scrubbed. The cost is one set
lookup per character of text per secret, so callers cut a body to a window (`window`)
before scrubbing: a snippet of 200 characters never scans 1 MiB.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote

REDACTED = "********"
FRAGMENT = 8
EDGE = 4

_JSON_ESCAPE = re.compile(r'\\(?:u([0-9a-fA-F]{4})|(["\\/bfnrt]))')
_JSON_SIMPLE = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_MASKED_RUN = re.compile(rb"\x01+")


def window(text: str, keep: int, secrets: Iterable[str]) -> str:
    """The start of `text` that can matter for a `keep`-character result: escapes decode to
    fewer characters, so a secret written with six characters for each of its own still fits."""
    longest = max((len(s) for s in secrets), default=0)
    return text[: keep + 6 * longest + 6]


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with whole secrets and pieces of them replaced by REDACTED (see the module doc)."""
    kept = {form for s in secrets if s for form in (s, decoded(s)) if form}
    if not kept or not text:
        return text
    given, text = text, decoded(text)
    masked = bytearray(len(text))
    folded = _fold(text)
    for secret in kept:
        _mark(folded, _fold(secret), masked)
    if not any(masked):  # nothing of a secret: the text as it came (decoding had garbled `C:\temp\new`)
        return given
    pieces: list[str] = []
    last = 0
    for run in _MASKED_RUN.finditer(masked):
        pieces += (text[last : run.start()], REDACTED)
        last = run.end()
    return "".join(pieces) + text[last:]


def decoded(text: str) -> str:
    """`text` with its JSON escapes read, then its `%XX` escapes (UTF-8; bytes that are not
    become U+FFFD, as do halves of a surrogate pair that have no other half)."""
    if "\\" in text:
        text = _JSON_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)) if m.group(1) else _JSON_SIMPLE[m.group(2)], text)
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")  # pairs joined, halves out
    if "%" in text:
        text = unquote(text)
    return text


def _fold(text: str) -> str:
    """`text` lower-cased character for character, so positions in it are positions in `text`
    (`İ` lower-cases to two characters, so it stays as it is)."""
    low = text.lower()
    if len(low) == len(text):  # lower() never shortens a character: every one mapped to one
        return low
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in text)


def _mark(text: str, secret: str, masked: bytearray) -> None:
    start = text.find(secret)
    while start != -1:
        masked[start : start + len(secret)] = b"\x01" * len(secret)
        start = text.find(secret, start + 1)
    if len(secret) > FRAGMENT:
        pieces = {secret[i : i + FRAGMENT] for i in range(len(secret) - FRAGMENT + 1)}
        for i in range(len(text) - FRAGMENT + 1):
            if text[i : i + FRAGMENT] in pieces:
                masked[i : i + FRAGMENT] = b"\x01" * FRAGMENT
    for size in range(min(len(secret) - 1, len(text)), EDGE - 1, -1):
        if text.endswith(secret[:size]):
            masked[len(text) - size :] = b"\x01" * size
            break
    for size in range(min(len(secret) - 1, len(text)), EDGE - 1, -1):
        if text.startswith(secret[-size:]):
            masked[:size] = b"\x01" * size
            break
