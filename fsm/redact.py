"""Secrets never leave: one :func:`redact` for everything the library writes.

A ccxt error can carry the whole signed request: Binance puts
``...&timestamp=...&signature=<hmac>`` in the URL of every private GET, and
ccxt's timeout and HTTP-status errors quote that URL; Bybit signs into
``X-BAPI-SIGN`` and ``X-BAPI-API-KEY`` headers; a Binance user stream URL
carries its ``listenKey``. None of that may reach an exception we raise, a
history detail, a journal row, a report, the CLI's output or a log line.

:func:`redact` replaces the *value* of every credential-looking field, in the
three spellings such text arrives in, and keeps the field's name so that a
reader still sees what was there:

* query strings and form bodies: ``signature=ab12`` → ``signature=<redacted>``;
* mappings (Python ``repr``, JSON): ``'X-BAPI-SIGN': 'ab12'`` →
  ``'X-BAPI-SIGN': '<redacted>'``;
* HTTP header lines: ``X-MBX-APIKEY: ab12`` → ``X-MBX-APIKEY: <redacted>``.

It is applied at the boundaries (the ccxt adapter's error mapping, the
monitor's report and log lines, the CLI) rather than trusted to every call
site. :class:`RedactingFilter` does the same for log records, including
their formatted tracebacks. Redaction is idempotent, and never turns valid
JSON into invalid JSON (a value stops at a quote).
"""

from __future__ import annotations

import contextlib
import logging
import re
from typing import Final

__all__ = ["REDACTED", "RedactingFilter", "redact", "redact_exception"]

#: What a secret's value becomes.
REDACTED: Final = "<redacted>"

# Field names that carry a credential or a signature, case-insensitive:
# signature / sign (Binance, Bybit v3, OKX, Bitget...), X-BAPI-SIGN,
# X-BAPI-API-KEY, X-MBX-APIKEY, OK-ACCESS-KEY/-SIGN/-PASSPHRASE, KC-API-*,
# apiKey, api_key, secret, password, passphrase, listenKey, Authorization,
# tokens. A prefix must end in a separator (``X-BAPI-``), so that ``design``
# is not ``sign``; any suffix is allowed (``X-BAPI-SIGN-TYPE`` is not a
# secret, but redacting it costs nothing).
_NAME: Final = (
    r"(?:[A-Za-z0-9]+[-_.])*"
    r"(?:signature|sign|api[-_]?key|apikey|secret|passphrase|password|passwd"
    r"|listen[-_]?key|access[-_]?key|access[-_]?token|auth[-_]?token|token"
    r"|authorization|private[-_]?key)"
    r"[A-Za-z0-9_\-]*"
)

# name=value in a query string or form body. The name must start a
# parameter (after ?, &, ;, whitespace, a quote or the start), so that
# "design=" or "timestamp=" never match; the value runs to the next
# separator.
_QUERY: Final = re.compile(
    rf"(?i)(?P<pre>(?:^|[?&;\s\"'(\[,{{]))(?P<name>{_NAME})=(?P<value>[^&\s\"'<>,;)\]}}]+)"
)

# 'name': 'value' / "name": "value" / name: value (mappings, JSON, headers).
# An optional "Bearer " / "Basic " scheme before the value goes with it.
_MAPPING: Final = re.compile(
    rf"(?i)(?P<q1>[\"']?)\b(?P<name>{_NAME})(?P=q1)(?P<sep>\s*:\s*)(?P<q2>[\"']?)"
    r"(?P<value>(?:(?:bearer|basic|hmac[-\w]*)\s+)?[^\"'\s,}\]&]+)(?P=q2)"
)


def redact(text: str) -> str:
    """``text`` with the value of every credential or signature field
    replaced by ``<redacted>``. Safe on any string, idempotent."""
    if not text:
        return text
    out = _QUERY.sub(_sub_query, text)
    return _MAPPING.sub(_sub_mapping, out)


def _sub_query(m: re.Match[str]) -> str:
    return f"{m['pre']}{m['name']}={REDACTED}"


def _sub_mapping(m: re.Match[str]) -> str:
    if m["value"] == REDACTED:
        return m[0]
    return f"{m['q1']}{m['name']}{m['q1']}{m['sep']}{m['q2']}{REDACTED}{m['q2']}"


def redact_exception(exc: BaseException) -> BaseException:
    """Scrub ``exc``'s message arguments in place (and its causes'), so that
    a traceback printed later, by anyone, shows no secret; returns ``exc``.
    Only string arguments are touched; an exception whose ``args`` cannot be
    set is left as it is."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        args = getattr(cur, "args", ())
        if any(isinstance(a, str) and redact(a) != a for a in args):
            with contextlib.suppress(AttributeError, TypeError):
                cur.args = tuple(redact(a) if isinstance(a, str) else a for a in args)
        cur = cur.__cause__ or cur.__context__
    return exc


class RedactingFilter(logging.Filter):
    """A logging filter that redacts a record's message and its traceback.

    The library installs it on its own loggers (``fsm``, ``adapters.ccxt``),
    so a secret in an exception message or an argument never reaches a
    handler. The record's message is rendered once (``getMessage``) and its
    arguments dropped; a traceback is formatted here and stored redacted in
    ``exc_text``, which :class:`logging.Formatter` prints instead of
    formatting ``exc_info`` again.
    """

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record's message and arguments; never drop a record."""
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string is logging's to report
            return True
        clean = redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            redact_exception(record.exc_info[1])
            if not record.exc_text:
                record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_FILTER: Final = RedactingFilter()


def install(logger: logging.Logger) -> None:
    """Put the (shared) redacting filter on ``logger``, once."""
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
