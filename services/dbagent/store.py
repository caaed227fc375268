"""DBAgent's storage: one method per named operation, and all of pushgrid's SQL.

Methods take checked values (the servant validates, also that a state move is one of
services.common.lifecycle) and return Slice structs. Failures are Slice errors: a missing row is
UnknownApp / UnknownDevice / UnknownMessage, a clash AlreadyExists, and MySQL being down, slow or
out of connections is Unavailable(backend="mysql") (pool.MYSQL).

Writes and the reads that must see them at once (authentication, a message just recorded) go to
the primary; reports and lookups that tolerate replication lag go to read_host.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import pymysql
import pymysql.cursors

from services.common import codec, lifecycle, limits, logs, platforms
from services.common.batching import chunks
from services.common.clock import now_ms
from services.common.config import MySQLSettings
from services.common.contract import PushGrid
from services.dbagent import credentials, curve
from services.dbagent.pool import MYSQL, Pool, connector

log = logging.getLogger(__name__)

ER_DUP_ENTRY = 1062
CHUNK = 1000  # rows or ids per statement, to keep statements well under max_allowed_packet
PURGE_ROWS_PER_STATEMENT = 2000  # rows one purge statement deletes: its locks last milliseconds
_ID_ATTEMPTS = 3  # random ids that collide (practically never) are drawn again

_APP_COLUMNS = "app_key, name, push_quota_per_minute, enabled, created_at, secret_rotated_at"
_DEVICE_COLUMNS = "app_key, registration_id, platform, created_at, last_seen"
_MESSAGE_COLUMNS = "msg_id, app_key, request, state, created_at, send_at, expires_at"


def _placeholders(count: int) -> str:
    return ", ".join(["%s"] * count)


def _duplicate_of(exc: pymysql.IntegrityError, key: str) -> bool:
    """True if exc is a duplicate-key error on the index named key ('PRIMARY' or a unique key).

    MariaDB names the key bare ('uq_apps_name'), MySQL 8 with its table ('apps.uq_apps_name').
    """
    message = str(exc.args[1]) if len(exc.args) > 1 else ""
    return exc.args[0] == ER_DUP_ENTRY and re.search(rf"for key '(\w+\.)?{re.escape(key)}'", message) is not None


# ---------------------------------------------------------------- rows to Slice structs


def _app(row: dict[str, Any]) -> PushGrid.AppInfo:
    return PushGrid.AppInfo(
        appKey=row["app_key"],
        name=row["name"],
        pushQuotaPerMinute=row["push_quota_per_minute"],
        enabled=bool(row["enabled"]),
        createdAt=row["created_at"],
        secretRotatedAt=row["secret_rotated_at"],
    )


def _device(row: dict[str, Any]) -> PushGrid.DeviceInfo:
    """Rows keep the platform as its enumerator's name ("Android"); platforms.parse takes any case."""
    return PushGrid.DeviceInfo(
        appKey=row["app_key"],
        registrationId=row["registration_id"],
        platform=platforms.parse(row["platform"]),
        createdAt=row["created_at"],
        lastSeen=row["last_seen"],
    )


def _message(row: dict[str, Any]) -> PushGrid.MessageRecord:
    return PushGrid.MessageRecord(
        msgId=row["msg_id"],
        appKey=row["app_key"],
        request=codec.loads(row["request"]),
        state=lifecycle.BY_NAME[row["state"]],
        createdAt=row["created_at"],
        sendAt=row["send_at"],
        expiresAt=row["expires_at"],
    )


def _unknown_app(app_key: str) -> PushGrid.UnknownApp:
    return PushGrid.UnknownApp(reason=f"no app has app key {app_key!r}", appKey=app_key)


def _unknown_device(registration_id: str) -> PushGrid.UnknownDevice:
    return PushGrid.UnknownDevice(reason=f"the app has no device {registration_id!r}", registrationId=registration_id)


def _unknown_message(msg_id: int) -> PushGrid.UnknownMessage:
    return PushGrid.UnknownMessage(reason=f"the app has no message {msg_id}", msgId=msg_id)


class Store:
    """MySQL storage of apps, devices, messages and statistics, through two pools (or one)."""

    def __init__(self, settings: MySQLSettings):
        self._write = Pool(connector(settings, settings.host, settings.port), settings.pool_size)
        if (settings.read_host, settings.read_port) == (settings.host, settings.port):
            self._read = self._write
        else:
            self._read = Pool(connector(settings, settings.read_host, settings.read_port), settings.pool_size)

    def close(self) -> None:
        self._write.close()
        if self._read is not self._write:
            self._read.close()

    # ------------------------------------------------------------ connections

    @contextmanager
    def _cursor(self, write: bool = True, transaction: bool = False) -> Iterator[pymysql.cursors.DictCursor]:
        """A cursor on the primary (write) or the replica; transaction=True commits at the end.

        pymysql's connection and timeout errors and an exhausted pool become Unavailable (MYSQL);
        Slice errors raised by the caller pass through (the pool rolls back any open transaction).
        """
        pool = self._write if write else self._read
        with MYSQL.guard(), pool.connection() as conn, conn.cursor() as cur:
            if transaction:
                conn.begin()
            yield cur
            if transaction:
                conn.commit()

    # ------------------------------------------------------------ apps

    def create_app(self, name: str, push_quota_per_minute: int) -> PushGrid.AppCredentials:
        secret = credentials.new_master_secret()
        secret_hash = credentials.hash_secret(secret)  # slow on purpose: done before taking a connection
        now = now_ms()
        for _ in range(_ID_ATTEMPTS):
            app_key = credentials.new_app_key()
            try:
                with self._cursor() as cur:
                    cur.execute(
                        "INSERT INTO apps (app_key, name, secret_hash, push_quota_per_minute, enabled,"
                        " created_at, secret_rotated_at) VALUES (%s, %s, %s, %s, TRUE, %s, %s)",
                        (app_key, name, secret_hash, push_quota_per_minute, now, now),
                    )
                return PushGrid.AppCredentials(appKey=app_key, masterSecret=secret)
            except pymysql.IntegrityError as exc:
                if _duplicate_of(exc, "uq_apps_name"):
                    raise PushGrid.AlreadyExists(reason=f"an app named {name!r} exists already", id=name) from None
                if not _duplicate_of(exc, "PRIMARY"):
                    raise
        raise RuntimeError("could not draw an unused app key")

    def get_app(self, app_key: str) -> PushGrid.AppInfo:
        with self._cursor(write=False) as cur:
            cur.execute(f"SELECT {_APP_COLUMNS} FROM apps WHERE app_key = %s", (app_key,))
            row = cur.fetchone()
        if row is None:
            raise _unknown_app(app_key)
        return _app(row)

    def list_apps(self) -> list[PushGrid.AppInfo]:
        with self._cursor(write=False) as cur:
            cur.execute(f"SELECT {_APP_COLUMNS} FROM apps ORDER BY created_at, app_key")
            return [_app(row) for row in cur.fetchall()]

    def verify_app(self, app_key: str, master_secret: str) -> PushGrid.AppInfo:
        """Unknown, disabled and wrong-secret all cost one scrypt and fail alike."""
        with self._cursor() as cur:
            cur.execute(f"SELECT {_APP_COLUMNS}, secret_hash FROM apps WHERE app_key = %s", (app_key,))
            row = cur.fetchone()
        usable = row is not None and bool(row["enabled"])
        matches = credentials.verify_secret(master_secret, row["secret_hash"] if usable else None)
        if not (usable and matches):
            raise PushGrid.AuthenticationFailed(reason="app key or master secret is wrong")
        return _app(row)

    def rotate_secret(self, app_key: str) -> PushGrid.AppCredentials:
        secret = credentials.new_master_secret()
        secret_hash = credentials.hash_secret(secret)
        with self._cursor() as cur:
            cur.execute(
                "UPDATE apps SET secret_hash = %s, secret_rotated_at = %s WHERE app_key = %s",
                (secret_hash, now_ms(), app_key),
            )
            if cur.rowcount == 0:
                raise _unknown_app(app_key)
        return PushGrid.AppCredentials(appKey=app_key, masterSecret=secret)

    def set_quota(self, app_key: str, push_quota_per_minute: int) -> None:
        with self._cursor() as cur:
            cur.execute(
                "UPDATE apps SET push_quota_per_minute = %s WHERE app_key = %s", (push_quota_per_minute, app_key)
            )
            if cur.rowcount == 0:
                raise _unknown_app(app_key)

    def set_device_limit(self, app_key: str, max_devices: int) -> None:
        with self._cursor() as cur:
            cur.execute("UPDATE apps SET device_limit = %s WHERE app_key = %s", (max_devices, app_key))
            if cur.rowcount == 0:
                raise _unknown_app(app_key)

    def set_app_enabled(self, app_key: str, enabled: bool) -> None:
        with self._cursor() as cur:
            cur.execute("UPDATE apps SET enabled = %s WHERE app_key = %s", (bool(enabled), app_key))
            if cur.rowcount == 0:
                raise _unknown_app(app_key)

    # ------------------------------------------------------------ devices

    def register_device(self, app_key: str, platform: PushGrid.Platform) -> PushGrid.DeviceCredentials:
        return self.register_devices(app_key, platform, 1)[0]

    def register_devices(
        self, app_key: str, platform: PushGrid.Platform, count: int
    ) -> list[PushGrid.DeviceCredentials]:
        """count new devices in one INSERT and one commit, with the app's device count; only an
        enabled app takes new devices."""
        tokens = [credentials.new_device_token() for _ in range(count)]
        hashes = [credentials.hash_token(t) for t in tokens]
        with self._cursor(transaction=True) as cur:
            self._require_room(cur, app_key, count)
            for _ in range(_ID_ATTEMPTS):
                now = now_ms()
                rids = [credentials.new_registration_id(now) for _ in range(count)]
                if len(set(rids)) < count:
                    continue
                try:
                    cur.executemany(
                        "INSERT INTO devices (registration_id, app_key, platform, token_hash, created_at, last_seen)"
                        " VALUES (%s, %s, %s, %s, %s, %s)",
                        [(rid, app_key, platform.name, h, now, now) for rid, h in zip(rids, hashes, strict=True)],
                    )
                    cur.execute("UPDATE apps SET device_count = device_count + %s WHERE app_key = %s", (count, app_key))
                    return [
                        PushGrid.DeviceCredentials(registrationId=rid, deviceToken=t)
                        for rid, t in zip(rids, tokens, strict=True)
                    ]
                except pymysql.IntegrityError as exc:
                    if not _duplicate_of(exc, "PRIMARY"):
                        raise
        raise RuntimeError("could not draw unused registration ids")

    def verify_device(self, app_key: str, registration_id: str, device_token: str) -> PushGrid.DeviceInfo:
        """Unknown device, device of a disabled app and wrong token fail alike. A read only: every
        connect calls it, and STC records last-seen times in batches (touch_devices)."""
        found = self.verify_devices([(app_key, registration_id, device_token)])[0]
        if found is None:
            raise PushGrid.AuthenticationFailed(reason="registration id or device token is wrong")
        return found

    def verify_devices(self, checks: Sequence[tuple[str, str, str]]) -> list[PushGrid.DeviceInfo | None]:
        """verify_device for many (app key, registration id, token) in one SELECT; None where one
        fails. Every check pays for one token comparison, found or not."""
        rows: dict[str, dict[str, Any]] = {}
        wanted = list(dict.fromkeys(rid for _, rid, _ in checks))
        if wanted:
            with self._cursor(write=False) as cur:
                for chunk in chunks(wanted, CHUNK):
                    cur.execute(
                        "SELECT d.app_key, d.registration_id, d.platform, d.created_at, d.last_seen, d.token_hash"
                        " FROM devices d JOIN apps a ON a.app_key = d.app_key"
                        f" WHERE d.registration_id IN ({', '.join(['%s'] * len(chunk))}) AND a.enabled",
                        list(chunk),
                    )
                    for row in cur.fetchall():
                        rows[row["registration_id"]] = row
        out: list[PushGrid.DeviceInfo | None] = []
        for app, rid, token in checks:
            row = rows.get(rid)
            if row is not None and row["app_key"] != app:
                row = None
            ok = credentials.verify_token(token, row["token_hash"] if row else None)
            out.append(_device(row) if ok and row else None)
        return out

    def get_device(self, app_key: str, registration_id: str) -> PushGrid.DeviceInfo:
        with self._cursor(write=False) as cur:
            cur.execute(
                f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE registration_id = %s AND app_key = %s",
                (registration_id, app_key),
            )
            row = cur.fetchone()
        if row is None:
            raise _unknown_device(registration_id)
        return _device(row)

    def touch_devices(self, app_key: str, registration_ids: Sequence[str], seen_at: int) -> None:
        """last_seen never moves back, so late or reordered batches do no harm."""
        with self._cursor() as cur:
            for chunk in chunks(registration_ids, CHUNK):
                cur.execute(
                    "UPDATE devices SET last_seen = GREATEST(last_seen, %s)"
                    f" WHERE app_key = %s AND registration_id IN ({_placeholders(len(chunk))})",
                    (seen_at, app_key, *chunk),
                )

    def unregister_device(self, app_key: str, registration_id: str) -> None:
        with self._cursor(transaction=True) as cur:
            cur.execute("DELETE FROM devices WHERE registration_id = %s AND app_key = %s", (registration_id, app_key))
            if cur.rowcount == 0:
                raise _unknown_device(registration_id)
            cur.execute("UPDATE apps SET device_count = GREATEST(device_count - 1, 0) WHERE app_key = %s", (app_key,))

    def device_count(self, app_key: str) -> int:
        """The app's counter (migration 003), kept with every registration: no scan of devices."""
        with self._cursor(write=False) as cur:
            cur.execute("SELECT device_count FROM apps WHERE app_key = %s", (app_key,))
            row = cur.fetchone()
        if row is None:
            raise _unknown_app(app_key)
        return int(row["device_count"])

    # ------------------------------------------------------------ messages

    def record_message(self, record: PushGrid.MessageRecord) -> None:
        """Stores the message and its zeroed statistics together; only an enabled app records."""
        try:
            recorded = self.record_messages(record.appKey, [record])[0]
        except pymysql.IntegrityError as exc:  # taken by a racing insert since it was looked for
            if not _duplicate_of(exc, "PRIMARY"):
                raise
            recorded = False
        if not recorded:
            raise PushGrid.AlreadyExists(reason=f"msg id {record.msgId} is taken", id=str(record.msgId))

    def record_messages(self, app_key: str, records: Sequence[PushGrid.MessageRecord]) -> list[bool]:
        """record_message for many messages of app_key in one transaction; False where the msg
        id is taken (those are left as they were)."""
        with self._cursor(transaction=True) as cur:
            self._require_enabled_app(cur, app_key)
            ids = [r.msgId for r in records]
            cur.execute(f"SELECT msg_id FROM messages WHERE msg_id IN ({', '.join(['%s'] * len(ids))})", ids)
            taken = {r["msg_id"] for r in cur.fetchall()}
            fresh = [r for r in dict((r.msgId, r) for r in records).values() if r.msgId not in taken]
            if fresh:
                cur.executemany(
                    f"INSERT INTO messages ({_MESSAGE_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    [
                        (r.msgId, app_key, codec.dumps(r.request), r.state.name, r.createdAt, r.sendAt, r.expiresAt)
                        for r in fresh
                    ],
                )
                cur.executemany("INSERT INTO message_stats (msg_id) VALUES (%s)", [(r.msgId,) for r in fresh])
        recorded = {r.msgId for r in fresh}
        return [r.msgId in recorded for r in records]

    def get_messages(self, keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], PushGrid.MessageRecord]:
        """The messages among keys (app key, msg id) that exist, in one SELECT."""
        ids = list(dict.fromkeys(m for _, m in keys))
        if not ids:
            return {}
        with self._cursor() as cur:
            cur.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE msg_id IN ({', '.join(['%s'] * len(ids))})", ids
            )
            rows = cur.fetchall()
        wanted = set(keys)
        return {k: _message(r) for r in rows if (k := (r["app_key"], r["msg_id"])) in wanted}

    def get_message(self, app_key: str, msg_id: int) -> PushGrid.MessageRecord:
        with self._cursor() as cur:
            cur.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE msg_id = %s AND app_key = %s", (msg_id, app_key)
            )
            row = cur.fetchone()
        if row is None:
            raise _unknown_message(msg_id)
        return _message(row)

    def find_message(self, msg_id: int) -> PushGrid.MessageRecord:
        """The message msg_id, whatever its app (operators look messages up by id alone)."""
        with self._cursor(write=False) as cur:
            cur.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE msg_id = %s", (msg_id,))
            row = cur.fetchone()
        if row is None:
            raise PushGrid.UnknownMessage(reason=f"there is no message {msg_id}", msgId=msg_id)
        return _message(row)

    def transition_message(
        self, app_key: str, msg_id: int, from_state: PushGrid.MessageState, to_state: PushGrid.MessageState
    ) -> bool:
        """Compare-and-set in one UPDATE: of racing callers exactly one moves the message.

        A scheduled message going out (lifecycle.OVERRIDE_TAKES_EFFECT) ends the message it
        overrides in the same transaction, so the winner of a race does it exactly once.
        """
        overrides = (from_state, to_state) in lifecycle.OVERRIDE_TAKES_EFFECT
        ended = 0
        with self._cursor(transaction=overrides) as cur:
            cur.execute(
                "UPDATE messages SET state = %s WHERE msg_id = %s AND app_key = %s AND state = %s",
                (to_state.name, msg_id, app_key, from_state.name),
            )
            if cur.rowcount != 1:
                cur.execute("SELECT 1 FROM messages WHERE msg_id = %s AND app_key = %s", (msg_id, app_key))
                if cur.fetchone() is None:
                    raise _unknown_message(msg_id)
                return False
            if overrides:
                ended = self._apply_override(cur, app_key, msg_id)
        log.info("%s %s -> %s", logs.about(msg_id, app_key), from_state.name, to_state.name)  # committed
        if ended:
            log.info("%s Overridden by msg=%d", logs.about(ended, app_key), msg_id)
        return True

    def apply_override(self, app_key: str, msg_id: int) -> bool:
        """applyOverride: msg_id's task is on the broker, so the message it overrides ends now."""
        with self._cursor() as cur:
            ended = self._apply_override(cur, app_key, msg_id)
        if ended:
            log.info("%s Overridden by msg=%d", logs.about(ended, app_key), msg_id)
        return bool(ended)

    def _apply_override(self, cur: pymysql.cursors.DictCursor, app_key: str, msg_id: int) -> int:
        """The one place an override takes effect: the message msg_id overrides (if any, and if
        the app's) moves to Overridden when an override ends its state (lifecycle.OVERRIDABLE);
        a Cancelled or Expired one stays. One UPDATE, so racing callers cannot move it twice.
        Returns the msg id it ended, or 0."""
        cur.execute("SELECT request, state FROM messages WHERE msg_id = %s AND app_key = %s", (msg_id, app_key))
        row = cur.fetchone()
        if row is None:
            raise _unknown_message(msg_id)
        old = codec.loads(row["request"]).options.overrideMsgId
        if not old or lifecycle.BY_NAME[row["state"]] not in lifecycle.PUBLISHED:
            return 0  # overrides nothing, or not (or never to be) out: a Scheduled or Cancelled one
        ends = sorted(s.name for s in lifecycle.OVERRIDABLE)
        cur.execute(
            "UPDATE messages SET state = %s WHERE msg_id = %s AND app_key = %s"
            f" AND state IN ({_placeholders(len(ends))})",
            (PushGrid.MessageState.Overridden.name, old, app_key, *ends),
        )
        return int(old) if cur.rowcount == 1 else 0

    def due_messages(self, until: int, limit: int) -> list[PushGrid.MessageRecord]:
        """A lagging replica only delays these; the caller's transitionMessage on the primary decides."""
        return self._messages_due(PushGrid.MessageState.Scheduled, until, limit)

    def unstarted_messages(self, before: int, limit: int) -> list[PushGrid.MessageRecord]:
        """Accepted (published) and due before `before`, yet never claimed by a dispatcher."""
        return self._messages_due(PushGrid.MessageState.Accepted, before, limit)

    def _messages_due(self, state: PushGrid.MessageState, until: int, limit: int) -> list[PushGrid.MessageRecord]:
        """Messages in state due by until, oldest first, in a reply of at most REPLY_MAX_BYTES
        (index ix_messages_due)."""
        with self._cursor(write=False) as cur:
            cur.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE state = %s AND send_at <= %s"
                " ORDER BY send_at, msg_id LIMIT %s",
                (state.name, until, limit),
            )
            out: list[PushGrid.MessageRecord] = []
            size = 0
            for row in cur.fetchall():
                size += len(row["request"])
                if out and size > limits.REPLY_MAX_BYTES:  # keep the reply well under Ice's message limit
                    break
                out.append(_message(row))
            return out

    def purge_expired(self, expired_before: int, limit: int) -> PushGrid.Purged:
        """Receipts, receipt curve and stats batches first, the message last: a purge cut off
        halfway leaves the message, so the next finds it again."""
        with self._cursor() as cur:
            cur.execute(
                "SELECT msg_id FROM messages WHERE expires_at < %s ORDER BY expires_at, msg_id LIMIT %s",
                (expired_before, limit),
            )
            ids = [row["msg_id"] for row in cur.fetchall()]
        purged = PushGrid.Purged(messages=0, receipts=0, statBatches=0)
        for msg_id in ids:
            purged.receipts += self._delete_all("DELETE FROM receipts WHERE msg_id = %s LIMIT %s", msg_id)
            self._delete_all("DELETE FROM receipt_curve WHERE msg_id = %s LIMIT %s", msg_id)
            purged.statBatches += self._delete_all("DELETE FROM stat_batches WHERE msg_id = %s LIMIT %s", msg_id)
        for chunk in chunks(ids, PURGE_ROWS_PER_STATEMENT):
            with self._cursor() as cur:
                marks = _placeholders(len(chunk))
                cur.execute(f"DELETE FROM message_stats WHERE msg_id IN ({marks})", chunk)
                purged.messages += cur.execute(f"DELETE FROM messages WHERE msg_id IN ({marks})", chunk)
        return purged

    def _delete_all(self, statement: str, msg_id: int) -> int:
        """Runs a DELETE ... LIMIT until it deletes fewer than the limit; returns the rows deleted."""
        total = 0
        while True:
            with self._cursor() as cur:
                deleted = cur.execute(statement, (msg_id, PURGE_ROWS_PER_STATEMENT))
            total += deleted
            if deleted < PURGE_ROWS_PER_STATEMENT:
                return total

    # ------------------------------------------------------------ statistics

    def _require_message(self, cur: pymysql.cursors.DictCursor, msg_id: int, app_key: str | None = None) -> None:
        """UnknownMessage unless msg_id exists (and, with app_key, belongs to that app)."""
        if app_key is None:
            cur.execute("SELECT 1 FROM messages WHERE msg_id = %s", (msg_id,))
        else:
            cur.execute("SELECT 1 FROM messages WHERE msg_id = %s AND app_key = %s", (msg_id, app_key))
        if cur.fetchone() is None:
            raise PushGrid.UnknownMessage(reason=f"no message has msg id {msg_id}", msgId=msg_id)

    def record_stats(self, msg_id: int, batch_key: str, delta: PushGrid.StatsDelta) -> None:
        """The stat_batches row and the counters commit together, so a batch counts exactly once."""
        with self._cursor(transaction=True) as cur:
            self._require_message(cur, msg_id)
            self._add_stats(cur, msg_id, batch_key, delta)

    def record_stats_many(self, rows: Sequence[tuple[int, str, PushGrid.StatsDelta]]) -> None:
        """record_stats for many rows in one transaction; rows of unknown messages are skipped."""
        with self._cursor(transaction=True) as cur:
            known = self._known_messages(cur, [msg_id for msg_id, _, _ in rows])
            for msg_id, batch_key, delta in rows:
                if msg_id in known:
                    self._add_stats(cur, msg_id, batch_key, delta)

    def _add_stats(
        self, cur: pymysql.cursors.DictCursor, msg_id: int, batch_key: str, delta: PushGrid.StatsDelta
    ) -> None:
        cur.execute(
            "INSERT IGNORE INTO stat_batches (msg_id, batch_key, recorded_at) VALUES (%s, %s, %s)",
            (msg_id, batch_key, now_ms()),
        )
        if cur.rowcount == 0:
            return
        cur.execute(
            "UPDATE message_stats SET targets = targets + %s, sent_online = sent_online + %s,"
            " stored_offline = stored_offline + %s WHERE msg_id = %s",
            (delta.targets, delta.sentOnline, delta.storedOffline, msg_id),
        )

    def record_receipts(self, app_key: str, msg_id: int, registration_ids: Sequence[str]) -> int:
        """Adds only the receipts not seen before to received (and to the curve, as received
        now); returns how many that was."""
        with self._cursor(transaction=True) as cur:
            sent = self._sends(cur, [msg_id]).get(msg_id)
            if sent is None or sent[0] != app_key:
                raise PushGrid.UnknownMessage(reason=f"no message has msg id {msg_id}", msgId=msg_id)
            return self._add_receipts(cur, msg_id, {curve.bucket(now_ms(), sent[1]): registration_ids})

    def record_receipts_many(self, groups: Sequence[tuple[str, int, Sequence[str]]]) -> int:
        """record_receipts for many (app key, msg id, registration ids) in one transaction;
        groups of unknown messages (or another app's) are skipped. Returns how many were new.
        Its callers (dispatchers of a release before the curves) say no time: received now."""
        now = now_ms()
        return self.record_timed_receipts([(app, msg_id, rids, now) for app, msg_id, rids in groups])

    def record_timed_receipts(self, groups: Sequence[tuple[str, int, Sequence[str], int]]) -> int:
        """record_receipts_many for (app key, msg id, registration ids, received at ms): each new
        receipt also counts on the message's curve, in the bucket of its time, in the same
        transaction (so a replayed batch adds nothing to either). Returns how many were new.

        A batch holds many groups of one message (a record per STC process and flush); they are
        merged per message and bucket, so the statements follow the buckets, not the groups."""
        new = 0
        with self._cursor(transaction=True) as cur:
            sends = self._sends(cur, [msg_id for _, msg_id, _, _ in groups])
            buckets: dict[int, dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
            for app_key, msg_id, rids, received_at in groups:
                sent = sends.get(msg_id)
                if sent is not None and sent[0] == app_key:
                    buckets[msg_id][curve.bucket(received_at, sent[1])].extend(rids)
            for msg_id in sorted(buckets):  # one order for every transaction: fewer lock waits
                new += self._add_receipts(cur, msg_id, buckets[msg_id])
        return new

    def get_curve(self, app_key: str, msg_id: int) -> list[PushGrid.CurvePoint]:
        """The app's message's receipt curve (curve.points); UnknownMessage for another app's."""
        with self._cursor(write=False) as cur:
            cur.execute(
                "SELECT c.offset_s, c.received FROM messages m LEFT JOIN receipt_curve c ON c.msg_id = m.msg_id"
                " WHERE m.msg_id = %s AND m.app_key = %s",
                (msg_id, app_key),
            )
            rows = cur.fetchall()
        if not rows:
            raise _unknown_message(msg_id)
        return curve.points((r["offset_s"], r["received"]) for r in rows if r["offset_s"] is not None)

    def _sends(self, cur: pymysql.cursors.DictCursor, msg_ids: Sequence[int]) -> dict[int, tuple[str, int]]:
        """The app key and send time of each of msg_ids that is a message."""
        sends: dict[int, tuple[str, int]] = {}
        for chunk in chunks(list(dict.fromkeys(msg_ids)), CHUNK):
            cur.execute(
                f"SELECT msg_id, app_key, send_at FROM messages WHERE msg_id IN ({_placeholders(len(chunk))})", chunk
            )
            sends.update({r["msg_id"]: (r["app_key"], r["send_at"]) for r in cur.fetchall()})
        return sends

    def _add_receipts(
        self, cur: pymysql.cursors.DictCursor, msg_id: int, by_bucket: Mapping[int, Sequence[str]]
    ) -> int:
        """Inserts the receipts of msg_id by bucket start, earliest bucket first (a device named in
        two counts in the first), and adds the new ones to received and to the curve."""
        counted: dict[int, int] = {}
        for offset_s in sorted(by_bucket):
            for chunk in chunks(by_bucket[offset_s], CHUNK):
                cur.execute(
                    "INSERT IGNORE INTO receipts (msg_id, registration_id) VALUES "
                    + ", ".join(["(%s, %s)"] * len(chunk)),
                    [value for registration_id in chunk for value in (msg_id, registration_id)],
                )
                if cur.rowcount:
                    counted[offset_s] = counted.get(offset_s, 0) + cur.rowcount
        new = sum(counted.values())
        if new:
            cur.execute("UPDATE message_stats SET received = received + %s WHERE msg_id = %s", (new, msg_id))
            cur.executemany(
                "INSERT INTO receipt_curve (msg_id, offset_s, received) VALUES (%s, %s, %s)"
                " ON DUPLICATE KEY UPDATE received = received + VALUES(received)",
                [(msg_id, offset_s, n) for offset_s, n in counted.items()],
            )
        return new

    def _require_room(self, cur: pymysql.cursors.DictCursor, app_key: str, count: int) -> None:
        """UnknownApp unless app_key is enabled; LimitExceeded if count more devices would pass its
        device limit. The app's row stays locked until the registration commits (FOR UPDATE), so
        registrations racing for the last places cannot both take them."""
        cur.execute("SELECT enabled, device_count, device_limit FROM apps WHERE app_key = %s FOR UPDATE", (app_key,))
        row = cur.fetchone()
        if row is None or not row["enabled"]:
            raise _unknown_app(app_key)
        limit = int(row["device_limit"])
        if limit and int(row["device_count"]) + count > limit:
            raise PushGrid.LimitExceeded(
                reason=f"the app has {row['device_count']} of its {limit} devices; its operator sets the limit",
                limit="devices",
                max=limit,
            )

    def _require_enabled_app(self, cur: pymysql.cursors.DictCursor, app_key: str) -> None:
        """UnknownApp unless app_key is an enabled app (only those take devices and messages)."""
        cur.execute("SELECT enabled FROM apps WHERE app_key = %s", (app_key,))
        row = cur.fetchone()
        if row is None or not row["enabled"]:
            raise _unknown_app(app_key)

    def _known_messages(self, cur: pymysql.cursors.DictCursor, msg_ids: Sequence[int]) -> dict[int, str]:
        """The app key of each of msg_ids that is a message."""
        known: dict[int, str] = {}
        for chunk in chunks(list(dict.fromkeys(msg_ids)), CHUNK):
            cur.execute(
                f"SELECT msg_id, app_key FROM messages WHERE msg_id IN ({', '.join(['%s'] * len(chunk))})", chunk
            )
            known.update({r["msg_id"]: r["app_key"] for r in cur.fetchall()})
        return known

    def note_message_error(self, app_key: str, msg_id: int, error: str) -> None:
        """Notes error on the message's report unless one is there already (the first stays)."""
        with self._cursor(transaction=True) as cur:
            self._require_message(cur, msg_id, app_key)
            cur.execute("UPDATE message_stats SET error = %s WHERE msg_id = %s AND error = ''", (error, msg_id))

    def get_message_errors(self, app_key: str, msg_ids: Sequence[int]) -> list[PushGrid.MessageError]:
        """The errors noted on the app's own messages among msg_ids, in the order asked."""
        if not msg_ids:
            return []
        with self._cursor(write=False) as cur:
            cur.execute(
                "SELECT m.msg_id, s.error FROM messages m JOIN message_stats s ON s.msg_id = m.msg_id"
                f" WHERE m.app_key = %s AND s.error <> '' AND m.msg_id IN ({_placeholders(len(msg_ids))})",
                (app_key, *msg_ids),
            )
            errors = {row["msg_id"]: row["error"] for row in cur.fetchall()}
        return [PushGrid.MessageError(msgId=m, error=errors[m]) for m in msg_ids if m in errors]

    def get_stats(self, app_key: str, msg_ids: Sequence[int]) -> list[PushGrid.MessageStats]:
        """Stats of the app's own messages among msg_ids, in the order asked; others are left out."""
        if not msg_ids:
            return []
        with self._cursor(write=False) as cur:
            cur.execute(
                "SELECT m.msg_id, m.state, s.targets, s.sent_online, s.stored_offline, s.received"
                " FROM messages m JOIN message_stats s ON s.msg_id = m.msg_id"
                f" WHERE m.app_key = %s AND m.msg_id IN ({_placeholders(len(msg_ids))})",
                (app_key, *msg_ids),
            )
            rows = {row["msg_id"]: row for row in cur.fetchall()}
        return [
            PushGrid.MessageStats(
                msgId=m,
                targets=rows[m]["targets"],
                sentOnline=rows[m]["sent_online"],
                storedOffline=rows[m]["stored_offline"],
                received=rows[m]["received"],
                state=lifecycle.BY_NAME[rows[m]["state"]],
            )
            for m in msg_ids
            if m in rows
        ]
