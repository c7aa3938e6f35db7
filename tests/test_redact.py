"""Secrets, and pieces of them, never survive into text we keep (issue 7: echoed and cut bodies)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.answers import SNIPPET_CHARS, Classifier
from pipeline.errors import AmbiguousError, PermanentHTTPError
from pipeline.logs import Redactor
from pipeline.redact import EDGE, FRAGMENT, REDACTED, scrub

KEY = "key-QWERTYUIOPASDF-9876"
SECRET = "zdk_secret_987"


def _kept_pieces(text: str, secret: str) -> list[str]:
    """Pieces of `secret` the scrubber promises to remove that are still in `text`."""
    inner = [secret[i : i + FRAGMENT] for i in range(len(secret) - FRAGMENT + 1) if secret[i : i + FRAGMENT] in text]
    edges = [secret[:n] for n in range(EDGE, len(secret)) if text.endswith(secret[:n])]
    edges += [secret[-n:] for n in range(EDGE, len(secret)) if text.startswith(secret[-n:])]
    return inner + edges + ([secret] if secret in text else [])


def _answer(status: int, body: str) -> str:
    with pytest.raises((AmbiguousError, PermanentHTTPError)) as info:
        Classifier((KEY, SECRET)).classify("k", status, {}, body.encode(), 1)
    return info.value.message


@pytest.mark.parametrize("cut", range(EDGE, len(KEY)))
def test_a_body_that_ends_in_the_middle_of_the_key_keeps_none_of_it(cut):
    # a gateway echoing the request and cutting its own body short: reproduced on main as
    # `xkey-QWERTYU` kept in the results file and the journal
    message = _answer(200, "x" * 180 + KEY[:cut])
    assert _kept_pieces(message, KEY) == [] and message.endswith(REDACTED)


@pytest.mark.parametrize(
    "echo",
    [
        json.dumps({"echo": KEY}).replace("-", "\\u002d"),  # JSON-escaped: QWERTYUIOPASDF was kept on main
        json.dumps({"echo": KEY}, ensure_ascii=True).replace("Q", "\\u0051"),
        "api_key=" + KEY.replace("-", "%2D") + "&x=1",  # form-encoded
        "api_key=" + KEY[5:] + "&x=1",  # a middle piece
        f"developer_secret={SECRET}\n\n",
    ],
)
def test_an_escaped_or_partial_echo_is_masked(echo):
    for status in (200, 502):
        message = _answer(status, "<html>" + echo + "</html>")
        assert _kept_pieces(message, KEY) == [] and _kept_pieces(message, SECRET) == [], message
        assert REDACTED in message


def test_what_is_not_a_secret_is_left_alone():
    text = "Invalid API Key: key-expired, contact support (QWE)"
    assert scrub(text, (KEY, SECRET)) == text
    assert scrub("", (KEY,)) == "" and scrub("abc", ()) == "abc"


def test_the_logs_use_the_same_scrubber():
    redactor = Redactor((KEY,))
    event = redactor(None, "warning", {"event": "x", "detail": "echo " + KEY[:12], "api_key": "anything"})
    assert event["api_key"] == REDACTED and KEY[:12] not in event["detail"] and event["detail"].endswith(REDACTED)


def test_a_huge_body_is_scrubbed_in_a_window_only():
    message = _answer(502, "y" * 1_000_000 + KEY)  # the key lies past the snippet: never scanned, never kept
    assert message.endswith("y" * (SNIPPET_CHARS - 3) + "...") and KEY[:EDGE] not in message


@given(
    st.text(min_size=0, max_size=300),
    st.integers(min_value=0, max_value=len(KEY)),
    st.integers(min_value=0, max_value=len(KEY)),
    st.text(min_size=0, max_size=300),
)
def test_no_promised_piece_of_a_secret_survives(before, start, end, after):
    text = before + KEY[min(start, end) : max(start, end)] + after
    assert _kept_pieces(scrub(text, (KEY, SECRET)), KEY) == []


@pytest.mark.parametrize(
    ("secret", "echo"),
    [
        ("ab/cd/ef/gh/ij/kl+mn==", json.dumps({"api_key": "ab/cd/ef/gh/ij/kl+mn=="}).replace("/", "\\/")),  # PHP
        ("ab/cd/ef/gh/ij/kl+mn==", '{"k": "ab\\/cd\\/ef\\/gh\\/ij\\/kl+mn=="}'),
        ("zdk_%2F%2F%2F%2F%2Fsecret", "bad developer_secret zdk_%2F%2F%2F%2F%2Fsecret"),  # a secret with %XX itself
        ("ab%41cd%42ef%43gh", "key ab%41cd%42ef%43gh refused"),
        ("clé-ключ-秘密-0123456789", "api_key=" + "clé-ключ-秘密-0123456789".encode().hex("%").join(["%", ""])),
        ('quote"back\\slash-123456', json.dumps({"k": 'quote"back\\slash-123456'})),
    ],
)
def test_a_secret_echoed_in_any_escaping_is_masked(secret, echo):
    """Found by a review: a key holding `/` echoed as `\\/` (PHP's json_encode) was kept whole in
    the results, journal, HTML report and error file; a secret holding `%XX` was kept decoded, and
    a UTF-8 key percent-encoded was kept as reversible Latin-1."""
    kept = scrub("<html>" + echo + "</html>", (secret,))
    assert REDACTED in kept and secret not in kept, kept
    from pipeline.redact import decoded

    assert (
        decoded(secret) not in kept and _kept_pieces(kept, secret) == [] and _kept_pieces(kept, decoded(secret)) == []
    )


def test_a_text_with_nothing_of_a_secret_is_kept_as_it_came():
    """Decoding every text had garbled messages that hold no secret: `C:\\temp\\new` got a TAB and a
    newline, `\\"` lost its backslash, `100%25` became `100%`."""
    for text in ("C:\\temp\\new_contacts.csv", 'say \\"hi\\"', "100%25 done", "line\\nnext"):
        assert scrub(text, (KEY, SECRET)) == text


@pytest.mark.parametrize("fold", [str.upper, str.lower, str.swapcase])
def test_a_secret_echoed_in_another_letter_case_is_masked(fold):
    """Left alone last session, fixed now: a gateway that upper-cases what it echoes (or a header
    value logged lower-cased) kept the whole key, `KEY-QWERTYUIOPASDF-9876`, in the results."""
    for secret in (KEY, SECRET):
        kept = scrub("<html>echo " + fold(secret) + " cut " + fold(secret)[:10], (secret,))
        assert fold(secret) not in kept and fold(secret)[:10] not in kept and REDACTED in kept, kept
        assert _kept_pieces(kept.lower(), secret.lower()) == []


def test_case_folding_keeps_the_text_as_it_came_where_nothing_is_masked():
    text = "Invalid API KEY for ORG İstanbul ß"  # characters whose case changes their length
    assert scrub(text, (KEY, SECRET)) == text
    assert scrub("İİ key-qwertyuiopasdf-9876 ß", (KEY,)) == "İİ " + REDACTED + " ß"
