"""The opaque paging cursor of tagMembers and resolve: where a walk over the buckets stands.

Why it carries everything: TagAlias replicas are load-balanced round-robin, so consecutive pages
of one walk land on different processes and no replica may keep walk state in memory. A cursor
is base64url of ``2:<bucket>:<after>:<run>:<check>`` where

- after is the last registration id handed out from that bucket ("" before its first): the next
  page starts just past it in the bucket's sorted result. A position by value, not by the layout
  of a hash table, means nothing else: it survives a Redis failover, a restart and a rebuilt
  result alike (an SSCAN cursor from an old master can skip members on its replica);
- run is 12 hex chars drawn on the walk's first page; with the query's digest it names the
  temporary sorted sets, so a retried page finds the set it read before, and two pushes of the
  same audience minutes apart never share a stale result;
- check is 8 hex chars of the query's digest: a cursor handed back with another tag or audience
  is refused instead of silently skipping devices.

Everything coming back is checked; garbage is PushGrid.InvalidArgument on field "cursor".
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from services.common import limits
from services.common.validation import invalid
from services.tagalias.keys import BUCKETS

VERSION = "2"
_AFTER_RE = re.compile(rf"^[A-Za-z0-9]{{0,{limits.REGID_MAX_BYTES}}}$")
_RUN_RE = re.compile(r"^[0-9a-f]{12}$")
_CHECK_RE = re.compile(r"^[0-9a-f]{8}$")
_TEXT_MAX = 200


@dataclass(frozen=True)
class Cursor:
    """A position in a walk: the bucket to read next and the last member read from it."""

    bucket: int
    after: str
    run: str
    check: str


def encode(c: Cursor) -> str:
    raw = f"{VERSION}:{c.bucket}:{c.after}:{c.run}:{c.check}".encode("ascii")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode(text: str, check: str) -> Cursor:
    """Parses a cursor a client sent back; check must match the one the walk was started with."""
    bad = invalid("cursor", "cursor is not one this service issued for this query; start with an empty cursor")
    if not isinstance(text, str) or not text or len(text) > _TEXT_MAX:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise bad from None
    parts = raw.split(":")
    if len(parts) != 5 or parts[0] != VERSION:
        raise bad
    _, b, after, run, got_check = parts
    if not b.isdigit() or not _AFTER_RE.match(after) or not _RUN_RE.match(run) or not _CHECK_RE.match(got_check):
        raise bad
    bucket = int(b)
    if not 0 <= bucket < BUCKETS:
        raise bad
    if got_check != check:
        raise invalid("cursor", "cursor belongs to another tag or audience; start with an empty cursor")
    return Cursor(bucket=bucket, after=after, run=run, check=got_check)
