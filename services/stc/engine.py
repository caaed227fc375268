"""STC's delivery logic, apart from WebSocket and Ice: who is connected here, and what they get.

The engine keeps the table of sessions (by registration id, and by app for broadcasts), runs
hello (verify, takeover, presence, welcome) and replay, sends deliveries and broadcasts, and
routes acks. Everything that blocks (DBAgent and TagAlias over Ice, Redis, Kafka) runs in a
thread pool so the event loop only moves frames. Acks, presence clears and receipts are written
in batches by one background loop; presence refreshes and last-seen touches by another.

The engine has its own types at both edges: `Outgoing` is a message as the Ice side hands it
over (servant.py converts the Slice Envelope), and a backend that cannot be reached is
`BackendUnavailable`, which the transport turns into a close code of PROTOCOL.md (4011).

All methods run on the engine's event loop; the transport and the Ice servant call them there.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from services.common import limits, logs, msgid
from services.common.batching import Batcher, chunks, packs
from services.common.clock import now_ms
from services.common.mailbox import Stored
from services.stc import metrics, protocol
from services.stc.protocol import Close
from services.stc.registration import RegistrationGate

log = logging.getLogger(__name__)

T = TypeVar("T")

# An unspread broadcast sends to this many devices between turns of the loop: long enough that
# its last device is not kept waiting by the acks of its first, short enough (tens of ms) that
# the other connections are not held up.
BROADCAST_RUN = 10_000
# While a broadcast is being sent, acks wait to be written until this many have gathered.
FLUSH_DEFERRED_MAX = 50_000

# After a presence refresh failed, the next is tried this soon (not a whole refresh period later).
CUT_OFF_RETRY_SECONDS = 3.0

# Hellos, replays or registrations in one batched backend call. Past a few hundred a batch saves
# no more round trips, and each device in it holds its transient objects until the batch ends.
HELLO_BATCH = 200


# ---------------------------------------------------------------- what the engine talks to


class BackendUnavailable(Exception):
    """A backend (DBAgent, TagAlias, Redis, Kafka) could not be reached: the call did nothing and
    may be tried again. str(self) says what failed; the transport closes the device with 4011."""


@dataclass(frozen=True)
class Outgoing:
    """One message for the devices of an app, as the Ice side hands it over."""

    msg_id: int
    app_key: str
    broadcast: bool
    expires_at: int  # ms; not sent at or after this
    override_msg_id: int
    body: str  # the device's msg frame (JSON), built once by the dispatcher and relayed as is


class Conn(Protocol):
    """One device connection as the transport gives it to the engine."""

    def send(self, frame: str | bytes) -> bool:
        """Writes a text frame (bytes: already UTF-8); False if the connection is closing or not reading."""

    def close(self, code: int, reason: str) -> None:
        """Starts closing the connection with a close code of PROTOCOL.md."""


@dataclass(frozen=True, slots=True)
class Device:
    """A verified device: what hello learns from DBAgent."""

    app_key: str
    registration_id: str
    platform: str  # "android", "ios" or "web"
    created_at: int  # ms


class Directory(Protocol):
    """The device registry (DBAgent and TagAlias); blocking calls, each for many devices at once.
    register raises protocol.AuthFailed for an unknown app; verify answers None for a device
    whose credentials are wrong; both raise BackendUnavailable when the registry cannot be reached."""

    def register(self, app_key: str, platform: str, count: int) -> list[tuple[str, str]]: ...
    def verify(self, hellos: Sequence[protocol.Hello]) -> list[Device | None]: ...
    def touch(self, app_key: str, registration_ids: Sequence[str], seen_at: int) -> None: ...


class Receipts(Protocol):
    """Where acknowledged msg ids go (Kafka); publish may buffer, flush waits for the broker.
    A record is the receipts of one app: [msg id, [registration ids that acked it]] pairs."""

    def publish(self, app_key: str, receipts: list[list[Any]]) -> None: ...
    def flush(self) -> None: ...


class Mailbox(Protocol):
    """The part of services.common.mailbox.Mailbox STC uses."""

    def set_online(self, rids: Sequence[str], stc_id: str, ttl_seconds: int) -> None: ...
    def set_offline_many(self, rids: Sequence[str], stc_id: str) -> None: ...
    def refresh_online(self, rids: Sequence[str], stc_id: str, ttl_seconds: int) -> list[str]: ...
    def missed(self, rids: Sequence[str], now_ms: int) -> dict[str, tuple[list[int], int]]: ...
    def load(self, msg_ids: Sequence[int]) -> dict[int, Stored]: ...
    def broadcasts_after(self, app: str, after_msg_id: int) -> list[int]: ...
    def ack_many(self, acks: Mapping[str, Sequence[int]]) -> None: ...
    def ack_broadcasts(self, marks: Mapping[str, int]) -> None: ...


# ---------------------------------------------------------------- sessions


@dataclass(eq=False, slots=True)
class Session:
    """A device that said hello on a connection here; sent maps msg id -> is a broadcast, oldest
    first (a plain dict: a connection's every byte counts, and an OrderedDict takes twice its room)."""

    conn: Conn
    device: Device
    sent: dict[int, bool] = field(default_factory=dict)
    open: bool = True

    @property
    def rid(self) -> str:
        return self.device.registration_id

    @property
    def app(self) -> str:
        return self.device.app_key

    def remember(self, msg_id: int, broadcast: bool) -> None:
        """Keeps the newest DEVICE_SENT_RECORD ids, enough to route every ack a device owes."""
        self.sent.pop(msg_id, None)  # sent again: now the newest
        self.sent[msg_id] = broadcast
        if len(self.sent) > limits.DEVICE_SENT_RECORD:
            del self.sent[next(iter(self.sent))]


@dataclass(frozen=True)
class Settings:
    stc_id: str
    heartbeat: int = limits.HEARTBEAT_SECONDS
    presence_ttl: int = limits.PRESENCE_TTL_SECONDS
    flush_seconds: float = 0.2  # acks, receipts and presence clears go out this often
    flush_size: int = 500  # ... or as soon as this many acks wait
    refresh_seconds: float = limits.PRESENCE_TTL_SECONDS / 3
    touch_every: int = 10  # connected devices are touched every this many refreshes


def _by_app_and_msg() -> defaultdict[str, defaultdict[int, list[str]]]:
    """Receipts gathered for the next flush: app -> msg id -> the devices that acked it."""
    return defaultdict(lambda: defaultdict(list))


def replay_order(
    queued: Sequence[int], broadcasts: Sequence[int], stored: Mapping[int, Stored], platform: str, now: int
) -> list[tuple[Stored, bool]]:
    """What a device gets after its welcome: queued messages oldest first, then broadcasts oldest
    first; each (message, is broadcast). Forgotten, expired and other-platform messages are left out."""
    out = []
    for ids, is_broadcast in ((sorted(queued), False), (sorted(broadcasts), True)):
        for m in ids:
            msg = stored.get(m)
            if msg is None or msg.expires_at <= now or (msg.platforms and platform not in msg.platforms):
                continue
            out.append((msg, is_broadcast))
    return out


class Engine:
    """The sessions of one STC process and everything that happens to them."""

    def __init__(
        self,
        settings: Settings,
        directory: Directory,
        mailbox: Mailbox,
        receipts: Receipts,
        executor: Executor | None = None,
        clock: Callable[[], int] = now_ms,
        gate: RegistrationGate | None = None,
    ) -> None:
        self.settings = settings
        self._gate = gate
        self._directory = directory
        self._mailbox = mailbox
        self._receipts = receipts
        self._executor = executor or ThreadPoolExecutor(max_workers=8, thread_name_prefix="stc-io")
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self._by_app: dict[str, dict[str, Session]] = defaultdict(dict)
        # batched writes, flushed by _flush
        self._acks: dict[str, list[int]] = defaultdict(list)
        self._marks: dict[str, int] = {}
        self._receipt_rows: defaultdict[str, defaultdict[int, list[str]]] = _by_app_and_msg()
        self._ack_count = 0
        self._offline: set[str] = set()
        self._touch_due: dict[str, set[str]] = defaultdict(set)  # app -> devices that came or left since the last touch
        self._cut_off = False  # the last presence refresh failed: Redis (maybe the grid) was out of reach
        self._flush_wanted = asyncio.Event()
        self._broadcasting = 0  # unspread broadcasts being sent now
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        # Devices arriving together share their backend calls (one DBAgent call, one Redis
        # pipeline per batch): a reconnect storm costs round trips per batch, not per device.
        self._registrations = Batcher(self._register_many, self._executor, HELLO_BATCH)
        self._verifications = Batcher(self._verify_many, self._executor, HELLO_BATCH)
        self._replays = Batcher(self._replay_plans, self._executor, HELLO_BATCH)

    # ---- blocking work off the loop

    async def _backend(self, answer: Awaitable[T], what: str = "") -> T:
        """Waits for a backend's answer. A DeviceError (the directory's verdict on a device) and a
        BackendUnavailable pass as they are; any other failure becomes a BackendUnavailable, and
        is logged if `what` names the call (a Batcher logs its own, once per batch)."""
        try:
            return await answer
        except (protocol.DeviceError, BackendUnavailable):
            raise
        except Exception as exc:
            if what:
                log.warning("%s failed: %s", what, exc)
            raise BackendUnavailable("STC could not reach its backends; try again") from exc

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Runs a blocking call in the pool, with _backend's failures."""
        answer = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        return await self._backend(answer, getattr(fn, "__name__", str(fn)))

    # ---- devices

    async def register(self, app_key: str, platform: str, address: str = "") -> str:
        """A new device of app_key registering from address: the registered frame (its credentials)."""
        try:
            rid, token = await self._backend(self._registrations.submit((app_key, platform, address)))
        except (protocol.DeviceError, BackendUnavailable) as exc:
            metrics.REGISTRATIONS.labels(metrics.outcome(exc)).inc()
            raise
        metrics.REGISTRATIONS.labels(metrics.outcome(None)).inc()
        return protocol.registered(rid, token)

    def _register_many(self, wanted: list[tuple[str, str, str]]) -> list[tuple[str, str] | Exception]:
        """(In the pool.) The gate's refusals, then one directory call per app and platform
        among the rest, in order."""
        refusals = self._gate.admit([(addr, app) for app, _, addr in wanted]) if self._gate else [None] * len(wanted)
        groups: dict[tuple[str, str], list[int]] = defaultdict(list)
        out: list[tuple[str, str] | Exception] = [BackendUnavailable("registration failed")] * len(wanted)
        for i, ((app_key, platform, _), refusal) in enumerate(zip(wanted, refusals, strict=True)):
            if refusal is not None:
                out[i] = protocol.RegistrationRefused(refusal.reason)
            else:
                groups[(app_key, platform)].append(i)
        for (app_key, platform), places in groups.items():
            answers: list[tuple[str, str] | Exception]
            try:
                answers = list(self._directory.register(app_key, platform, len(places)))
            except Exception as exc:  # noqa: BLE001 - the verdict of each device of the group
                answers = [exc] * len(places)
            for i, answer in zip(places, answers, strict=True):
                out[i] = answer
        return out

    async def hello(self, conn: Conn, hello: protocol.Hello) -> Session:
        """Verifies the device, takes over an older connection of it, marks it online, welcomes it."""
        try:
            device = await self._backend(self._verifications.submit(hello))
        except (protocol.DeviceError, BackendUnavailable) as exc:
            metrics.HELLOS.labels(metrics.outcome(exc)).inc()
            raise
        metrics.HELLOS.labels(metrics.outcome(None)).inc()
        old = self._sessions.get(device.registration_id)
        if old is not None:
            self._drop(old)
            old.conn.close(Close.REPLACED, "replaced by a newer connection")
        session = Session(conn, device)
        self._sessions[session.rid] = session
        self._by_app[session.app][session.rid] = session
        self._offline.discard(session.rid)
        self._touch_due[session.app].add(session.rid)
        conn.send(protocol.welcome(self.settings.heartbeat, self.settings.stc_id, self._clock()))
        return session

    def _verify_many(self, hellos: list[protocol.Hello]) -> list[Device | Exception]:
        """(In the pool.) Verifies hellos in one directory call and marks the good ones online."""
        devices = self._directory.verify(hellos)
        good = [d.registration_id for d in devices if d is not None]
        if good:
            self._mailbox.set_online(good, self.settings.stc_id, self.settings.presence_ttl)
        return [d if d is not None else protocol.AuthFailed("authentication failed") for d in devices]

    async def replay(self, session: Session) -> int:
        """Sends what the device missed (PROTOCOL.md, Replay); returns how many messages."""
        plan = await self._backend(self._replays.submit(session.device))
        sent = 0
        for msg, is_broadcast in plan:
            if not session.open:
                break
            try:
                frame = protocol.as_replay(msg.frame)
            except ValueError:
                log.warning("stored message %d is not a frame; skipped", msg.msg_id)
                continue
            sent += self._send(session, frame, msg.msg_id, is_broadcast)
        if sent:
            metrics.REPLAYS.inc()
            metrics.REPLAYED.inc(sent)
        return sent

    def _replay_plans(self, devices: list[Device]) -> list[list[tuple[Stored, bool]]]:
        """(In the pool.) Each device's queue and the broadcasts of its app it has not acknowledged:
        one pipeline for the queues and marks, one read per app's log, one for the messages."""
        now = self._clock()
        missed = self._mailbox.missed([d.registration_id for d in devices], now)
        after = {
            d.registration_id: max(missed[d.registration_id][1], msgid.floor_for_time(d.created_at)) for d in devices
        }
        oldest: dict[str, int] = {}
        for d in devices:
            oldest[d.app_key] = min(oldest.get(d.app_key, after[d.registration_id]), after[d.registration_id])
        logs = {app: self._mailbox.broadcasts_after(app, mark) for app, mark in oldest.items()}
        wanted = [m for queued, _ in missed.values() for m in queued] + [m for log_ in logs.values() for m in log_]
        stored = self._mailbox.load(list(dict.fromkeys(wanted)))
        return [
            replay_order(
                missed[d.registration_id][0],
                [m for m in logs[d.app_key] if m > after[d.registration_id]],
                stored,
                d.platform,
                now,
            )
            for d in devices
        ]

    def ack(self, session: Session, msg_ids: Sequence[int]) -> None:
        """Routes the acks of msg ids sent on this connection; others are ignored (never trusted)."""
        taken = 0
        for m in msg_ids:
            is_broadcast = session.sent.pop(m, None)
            if is_broadcast is None:
                continue
            if is_broadcast:
                self._marks[session.rid] = max(self._marks.get(session.rid, 0), m)
            else:
                self._acks[session.rid].append(m)
            self._receipt_rows[session.app][m].append(session.rid)
            self._ack_count += 1
            taken += 1
        metrics.ACKS.inc(taken)
        if not session.sent:
            session.sent = {}  # a dict keeps its table when emptied: 64 bytes instead of 184 per idle device
        if self._ack_count >= self.settings.flush_size:
            self._flush_wanted.set()

    def disconnected(self, session: Session) -> None:
        """The transport's connection ended; presence is cleared unless a newer one holds the device."""
        session.open = False
        if self._sessions.get(session.rid) is session:
            self._drop(session)
            self._offline.add(session.rid)
        self._touch_due[session.app].add(session.rid)

    def _drop(self, session: Session) -> None:
        session.open = False
        self._sessions.pop(session.rid, None)
        app = self._by_app.get(session.app)
        if app is not None:
            app.pop(session.rid, None)
            if not app:
                del self._by_app[session.app]

    # ---- sending

    def _send(self, session: Session, frame: str | bytes, msg_id: int, broadcast: bool) -> bool:
        if not session.open or not session.conn.send(frame):
            return False
        session.remember(msg_id, broadcast)
        return True

    def _expired(self, expires_at: int) -> bool:
        return expires_at <= self._clock()

    async def deliver(self, msg: Outgoing, rids: Sequence[str]) -> list[str]:
        """Sends msg to those of rids connected here (devices of its app); returns them."""
        if self._expired(msg.expires_at):
            return []
        out = []
        frame = msg.body.encode()  # encoded once, the same bytes to every device
        for rid in dict.fromkeys(rids):
            session = self._sessions.get(rid)
            if (
                session is not None
                and session.app == msg.app_key
                and self._send(session, frame, msg.msg_id, msg.broadcast)
            ):
                out.append(rid)
        metrics.LIVE.inc(len(out))
        log.info("%s sent to %d of %d devices", logs.about(msg.msg_id, msg.app_key), len(out), len(rids))
        return out

    async def broadcast(self, msg: Outgoing, platforms: Iterable[str], spread_ms: int) -> int:
        """Sends msg to every device of its app here (of platforms; empty: all), evenly over spread_ms."""
        wanted = set(platforms)
        targets = [s for s in self._by_app.get(msg.app_key, {}).values() if not wanted or s.device.platform in wanted]
        loop = asyncio.get_running_loop()
        start, spread, n = loop.time(), max(spread_ms, 0) / 1000.0, len(targets)
        frame = msg.body.encode()  # encoded once, the same bytes to every device
        sent = 0
        busy = 0 if spread else 1  # a spread broadcast waits between its sends: acks go out as usual
        self._broadcasting += busy
        try:
            for i, session in enumerate(targets):
                if spread:
                    delay = start + spread * i / n - loop.time()
                    if delay > 0.01:  # sends due within 10 ms go out together
                        try:
                            await asyncio.wait_for(self._stopping.wait(), delay)
                        except TimeoutError:
                            pass
                elif i % BROADCAST_RUN == 0 and i:
                    await asyncio.sleep(0)  # a huge app must not hold up the other connections
                if (spread or i % BROADCAST_RUN == 0) and (self._expired(msg.expires_at) or self._stopping.is_set()):
                    break  # the devices not reached get it from the broadcast log when they reconnect
                sent += self._send(session, frame, msg.msg_id, True)
        finally:
            self._broadcasting -= busy
            metrics.BROADCAST.inc(sent)
        log.info("%s broadcast sent to %d of %d devices", logs.about(msg.msg_id, msg.app_key), sent, n)
        return sent

    def online_count(self, app_key: str) -> int:
        return len(self._by_app.get(app_key, ()))

    @property
    def connections(self) -> int:
        return len(self._sessions)

    # ---- background work

    def start(self) -> None:
        """Starts the flush and refresh loops on the running event loop."""
        self._tasks = [asyncio.create_task(self._flush_loop()), asyncio.create_task(self._refresh_loop())]

    async def _flush_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._flush_wanted.wait(), self.settings.flush_seconds)
            except TimeoutError:
                pass
            if self._broadcasting and self._ack_count < FLUSH_DEFERRED_MAX:
                continue  # the flush thread would take the GIL from the sends; acks can wait that long
            self._flush_wanted.clear()
            await self.flush()

    async def flush(self) -> None:
        """Writes the acks and presence clears gathered so far, then publishes their receipts."""
        acks, marks, rows, offline = self._acks, self._marks, self._receipt_rows, self._offline
        self._acks, self._marks, self._receipt_rows, self._offline = defaultdict(list), {}, _by_app_and_msg(), set()
        self._ack_count = 0
        offline = {rid for rid in offline if rid not in self._sessions}
        if acks or marks or offline:
            try:
                await self._call(self._write, acks, marks, sorted(offline))
            except BackendUnavailable:
                pass  # logged; unwritten acks only mean the messages are replayed once more
            back = [rid for rid in offline if rid in self._sessions]
            if back:  # reconnected here while the clear was in flight: say so again
                await self._quietly(self._mailbox.set_online, back, self.settings.stc_id, self.settings.presence_ttl)
        if rows:
            await self._quietly(self._publish, rows)

    def _write(self, acks: Mapping[str, Sequence[int]], marks: Mapping[str, int], offline: Sequence[str]) -> None:
        if acks:
            self._mailbox.ack_many(acks)
        if marks:
            self._mailbox.ack_broadcasts(marks)
        for chunk in chunks(offline, limits.DELIVER_BATCH):
            self._mailbox.set_offline_many(chunk, self.settings.stc_id)

    def _publish(self, rows: Mapping[str, Mapping[int, list[str]]]) -> None:
        """One record per app and RECEIPTS_PER_RECORD acks: [msg id, [registration ids]] pairs."""
        for app, by_msg in rows.items():
            for record in packs(by_msg.items(), limits.RECEIPTS_PER_RECORD):
                self._receipts.publish(app, [[msg_id, list(rids)] for msg_id, rids in record])

    async def _quietly(self, fn: Callable[..., Any], *args: Any) -> None:
        """A background write: failures are logged by _call and not raised."""
        try:
            await self._call(fn, *args)
        except BackendUnavailable:
            pass

    async def _refresh_loop(self) -> None:
        rounds = 0
        while True:
            # cut off, look again soon: the devices here wait for their replay until then
            await asyncio.sleep(CUT_OFF_RETRY_SECONDS if self._cut_off else self.settings.refresh_seconds)
            rounds += 1
            await self.refresh(touch_connected=rounds % self.settings.touch_every == 0)

    async def refresh(self, touch_connected: bool = False) -> None:
        """Extends presence of every device here; closes those another STC took over (4004);
        touches the last-seen time of devices that came or left (and of all connected, when asked).

        After a refresh that failed, the first one that works replays every device here: while
        this process was cut off (a network partition of its host), dispatchers could not reach
        it, so messages went only to its devices' queues, and a device that stayed connected
        would not say hello again to get them."""
        rids = list(self._sessions)
        try:
            taken = await self._call(self._refresh_presence, rids)
        except BackendUnavailable:
            self._cut_off = True
            taken = []
        else:
            if self._cut_off:
                self._cut_off = False
                await self._replay_everyone()
        for rid in taken:
            session = self._sessions.get(rid)
            if session is not None:
                self._drop(session)
                session.conn.close(Close.REPLACED, "replaced by a newer connection")
        seen, self._touch_due = self._touch_due, defaultdict(set)
        if touch_connected:
            for app, sessions in self._by_app.items():
                seen[app].update(sessions)
        if seen:
            await self._quietly(self._touch, seen, self._clock())

    async def _replay_everyone(self) -> None:
        sessions = list(self._sessions.values())
        log.warning(
            "%s: in reach again after a failed refresh; replaying %d devices", self.settings.stc_id, len(sessions)
        )
        results = await asyncio.gather(*(self.replay(s) for s in sessions), return_exceptions=True)
        failed = sum(isinstance(r, BaseException) for r in results)
        if failed:
            self._cut_off = True  # try them all again at the next refresh
            log.warning("%s: %d replays failed; again at the next refresh", self.settings.stc_id, failed)

    def _refresh_presence(self, rids: Sequence[str]) -> list[str]:
        taken: list[str] = []
        for chunk in chunks(rids, limits.DELIVER_BATCH):
            taken += self._mailbox.refresh_online(chunk, self.settings.stc_id, self.settings.presence_ttl)
        return taken

    def _touch(self, seen: Mapping[str, set[str]], now: int) -> None:
        for app, rids in seen.items():
            for chunk in chunks(sorted(rids), limits.RECEIPTS_PER_CALL):
                self._directory.touch(app, chunk, now)

    def stop_spreading(self) -> None:
        """Ends broadcasts being spread, with what they sent so far: the server is shutting down
        and Ice waits for every call in progress to answer first."""
        self._stopping.set()

    async def shutdown(self) -> None:
        """Stops the loops, lets go of every device (1012), clears presence, flushes everything."""
        self.stop_spreading()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for session in list(self._sessions.values()):
            self.disconnected(session)
            session.conn.close(Close.RESTARTING, "STC restarting")
        await self.flush()
        seen, self._touch_due = self._touch_due, defaultdict(set)
        if seen:
            await self._quietly(self._touch, seen, self._clock())
        await self._quietly(self._receipts.flush)
