"""Delivery state in the Redis Cluster, shared by STC and the dispatchers: the one place it lives.

Per device (hash tag {<registration id>}, so one device's keys share a slot and a Lua script can
touch them together):
  pg:d:{rid}:on   presence: the STC id holding the device, expiring unless STC refreshes it
  pg:d:{rid}:q    offline queue: sorted set of msg ids scored by expiry (ms), newest kept
  pg:d:{rid}:lb   the newest broadcast msg id the device acknowledged
Per message and app:
  pg:m:{msgid}    the message's stored form (JSON: device frame, platforms), gone at its expiry
  pg:bc:{app}     the app's broadcast log: sorted set of msg ids (time-ordered), trimmed by age
  pg:task:{msgid} a dispatcher's checkpoint for the message's task (resume cursor, page, done)
  pg:dispatchers  which task partitions each dispatcher owns (what `pushgrid up` waits for)

A targeted message is queued for every target while its TTL lasts, online or not, and leaves
the queue when the device acks it: online delivery is the fast path, the queue is the guarantee.
A broadcast is one log entry, however many devices the app has.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from redis.cluster import RedisCluster

from services.common import limits
from services.common.backends import REDIS
from services.common.batching import chunks
from services.common.lua import load_scripts
from services.common.msgid import floor_for_time
from services.common.redis_client import by_node, queue, queue_eval

# The client decodes replies (redis_client.cluster sets decode_responses), so the casts below
# only tell mypy what redis-py's generic reply types cannot: these replies are str.


def _presence(rid: str) -> str:
    return f"pg:d:{{{rid}}}:on"


def _queue(rid: str) -> str:
    return f"pg:d:{{{rid}}}:q"


def _last_broadcast(rid: str) -> str:
    return f"pg:d:{{{rid}}}:lb"


def _rid_of(device_key: str) -> str:
    """The registration id in a device's key (pg:d:{rid}:...)."""
    return device_key[device_key.index("{") + 1 : device_key.index("}")]


def _message(msg_id: int) -> str:
    return f"pg:m:{{{msg_id}}}"


def _broadcasts(app: str) -> str:
    return f"pg:bc:{{{app}}}"


def _task(msg_id: int) -> str:
    return f"pg:task:{{{msg_id}}}"


_DISPATCHERS = "pg:dispatchers"

# The scripts of lua/: presence cleared or refreshed only if it still names the caller's STC, and
# devices' broadcast marks that only rise (refreshes and marks many per call, any slots of a node).
_SCRIPTS = load_scripts("services.common", ["clear_presence", "refresh_presence", "ack_broadcasts"])
_CLEAR_PRESENCE, _REFRESH_PRESENCE, _ACK_BROADCASTS = (
    _SCRIPTS["clear_presence"],
    _SCRIPTS["refresh_presence"],
    _SCRIPTS["ack_broadcasts"],
)


@dataclass(frozen=True)
class Stored:
    """A message as kept for replay: the device frame and who may get it."""

    msg_id: int
    frame: str
    platforms: tuple[str, ...]  # platform names; empty means every platform
    expires_at: int  # ms
    override_msg_id: int = 0

    def to_json(self) -> str:
        return json.dumps(
            {
                "frame": self.frame,
                "platforms": list(self.platforms),
                "expiresAt": self.expires_at,
                "override": self.override_msg_id,
            }
        )

    @classmethod
    def from_json(cls, msg_id: int, raw: str) -> Stored:
        d = json.loads(raw)
        return cls(msg_id, d["frame"], tuple(d.get("platforms") or ()), int(d["expiresAt"]), int(d.get("override", 0)))


class Mailbox:
    """Presence, offline queues, stored messages, broadcast logs and dispatch checkpoints.

    Every method reaching Redis raises Unavailable("redis") when Redis fails (backends.REDIS).
    """

    def __init__(self, redis: RedisCluster) -> None:
        self._r = redis
        self._clear_presence = redis.register_script(_CLEAR_PRESENCE)

    # ---- presence

    @REDIS.guarded
    def set_online(self, rids: Sequence[str], stc_id: str, ttl_seconds: int) -> None:
        """Marks devices as held by stc_id (also refreshes them: STC calls this on heartbeats)."""
        with self._r.pipeline(transaction=False) as p:
            for rid in rids:
                key = _presence(rid)
                queue(p, key, "SET", key, stc_id, "EX", ttl_seconds)
            p.execute()

    @REDIS.guarded
    def set_offline(self, rid: str, stc_id: str) -> None:
        self._clear_presence(keys=[_presence(rid)], args=[stc_id])

    @REDIS.guarded
    def set_offline_many(self, rids: Sequence[str], stc_id: str) -> None:
        """set_offline for many devices in one pipeline (an STC closing its connections)."""
        self._eval_each(_CLEAR_PRESENCE, [(_presence(rid), stc_id) for rid in rids])

    @REDIS.guarded
    def refresh_online(self, rids: Sequence[str], stc_id: str, ttl_seconds: int) -> list[str]:
        """Extends presence of devices stc_id still holds; returns those another STC took over.
        One script call per node for all its devices (STC refreshes every device it holds, every
        PRESENCE_TTL_SECONDS / 3), in one pipeline."""
        taken = self._eval_per_node(_REFRESH_PRESENCE, [stc_id, ttl_seconds], [_presence(rid) for rid in rids])
        return [_rid_of(key) for keys in taken for key in keys]

    @REDIS.guarded
    def where(self, rids: Sequence[str]) -> dict[str, str]:
        """Which STC holds each of rids; devices not online are left out."""
        if not rids:
            return {}
        values = self._r.mget_nonatomic([_presence(r) for r in rids])
        return {rid: stc for rid, stc in zip(rids, values, strict=True) if stc}

    # ---- stored messages

    def store(self, msg: Stored) -> None:
        self.store_many([msg])

    @REDIS.guarded
    def store_many(self, msgs: Sequence[Stored]) -> None:
        """Keeps messages for replay until their expiry, in one pipeline."""
        with self._r.pipeline(transaction=False) as p:
            for msg in msgs:
                key = _message(msg.msg_id)
                queue(p, key, "SET", key, msg.to_json(), "PXAT", msg.expires_at)
            p.execute()

    @REDIS.guarded
    def load(self, msg_ids: Sequence[int]) -> dict[int, Stored]:
        """The stored messages among msg_ids that have not expired."""
        if not msg_ids:
            return {}
        raws = self._r.mget_nonatomic([_message(m) for m in msg_ids])
        return {m: Stored.from_json(m, raw) for m, raw in zip(msg_ids, raws, strict=True) if raw}

    @REDIS.guarded
    def forget(self, msg_id: int) -> None:
        """Drops a message (overridden or cancelled): queues and logs still naming it skip it."""
        self._r.delete(_message(msg_id))

    # ---- targeted queues

    def enqueue(self, msg: Stored, rids: Iterable[str]) -> int:
        """Queues msg for each device (bounded, newest kept); drops the message it overrides."""
        return self.enqueue_many([(msg, rids)])

    @REDIS.guarded
    def enqueue_many(self, items: Sequence[tuple[Stored, Iterable[str]]]) -> int:
        """enqueue for many messages in one pipeline; answers how many devices' queues it wrote."""
        count = 0
        with self._r.pipeline(transaction=False) as p:
            for msg, rids in items:
                for rid in rids:
                    key = _queue(rid)
                    queue(p, key, "ZADD", key, msg.expires_at, str(msg.msg_id))
                    if msg.override_msg_id:
                        queue(p, key, "ZREM", key, str(msg.override_msg_id))
                    queue(p, key, "ZREMRANGEBYRANK", key, 0, -limits.OFFLINE_PER_DEVICE - 1)
                    queue(p, key, "PEXPIREAT", key, msg.expires_at, "GT")
                    queue(p, key, "PEXPIREAT", key, msg.expires_at, "NX")
                    count += 1
            if count:
                p.execute()
        return count

    def pending(self, rid: str, now_ms: int) -> list[int]:
        """Queued msg ids of a device that have not expired, oldest first."""
        return self.missed([rid], now_ms)[rid][0]

    @REDIS.guarded
    def missed(self, rids: Sequence[str], now_ms: int) -> dict[str, tuple[list[int], int]]:
        """For each device, what replay starts from: its queued msg ids that have not expired
        (oldest first) and the newest broadcast it acknowledged; one pipeline for all."""
        with self._r.pipeline(transaction=False) as p:
            for rid in rids:
                key = _queue(rid)
                queue(p, key, "ZRANGEBYSCORE", key, now_ms, "+inf")
                key = _last_broadcast(rid)
                queue(p, key, "GET", key)
            replies = p.execute()
        return {rid: ([int(m) for m in replies[2 * i]], int(replies[2 * i + 1] or 0)) for i, rid in enumerate(rids)}

    @REDIS.guarded
    def ack(self, rid: str, msg_ids: Sequence[int]) -> None:
        if msg_ids:
            self._r.zrem(_queue(rid), *[str(m) for m in msg_ids])

    @REDIS.guarded
    def ack_many(self, acks: Mapping[str, Sequence[int]]) -> None:
        """ack for many devices in one pipeline (STC batches what its devices acknowledged)."""
        with self._r.pipeline(transaction=False) as p:
            for rid, msg_ids in acks.items():
                if msg_ids:
                    key = _queue(rid)
                    queue(p, key, "ZREM", key, *[str(m) for m in msg_ids])
            p.execute()

    # ---- broadcasts

    @REDIS.guarded
    def log_broadcast(self, app: str, msg: Stored, now_ms: int) -> None:
        """Appends a broadcast to the app's log and trims entries past the longest TTL."""
        key = _broadcasts(app)
        with self._r.pipeline(transaction=False) as p:
            p.zadd(key, {str(msg.msg_id): msg.msg_id})
            if msg.override_msg_id:
                p.zrem(key, str(msg.override_msg_id))
            p.zremrangebyscore(key, 0, floor_for_time(now_ms - limits.TTL_MAX_SECONDS * 1000) - 1)
            p.zremrangebyrank(key, 0, -limits.BROADCAST_LOG_MAX - 1)
            p.pexpire(key, limits.TTL_MAX_SECONDS * 1000)
            p.execute()

    @REDIS.guarded
    def broadcasts_after(self, app: str, after_msg_id: int) -> list[int]:
        """Logged broadcast msg ids newer than after_msg_id, oldest first (expired ones included:
        load() skips those)."""
        found = cast(list[str], self._r.zrangebyscore(_broadcasts(app), f"({after_msg_id}", "+inf"))
        return [int(m) for m in found]

    def last_broadcast(self, rid: str) -> int:
        return self.missed([rid], 0)[rid][1]

    @REDIS.guarded
    def ack_broadcasts(self, marks: Mapping[str, int]) -> None:
        """Raises devices' acknowledged-broadcast marks, never lowering one: one script call per
        node for all its devices (a broadcast is acked once per device, and a call each would cost
        more than sending it), in one pipeline."""
        keys = [_last_broadcast(rid) for rid in marks]
        self._eval_per_node(_ACK_BROADCASTS, [limits.TTL_MAX_SECONDS * 1000], keys, lambda k: (marks[_rid_of(k)],))

    # ---- helpers

    def _eval_each(self, script: str, calls: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Runs a one-key script once per (key, *args) in one cluster pipeline."""
        if not calls:
            return []
        with self._r.pipeline(transaction=False) as p:
            for key, *args in calls:
                queue_eval(p, script, [key], args)
            return p.execute()

    def _eval_per_node(
        self,
        script: str,
        lead: Sequence[Any],
        keys: Sequence[str],
        with_key: Callable[[str], Sequence[Any]] = lambda key: (),
    ) -> list[Any]:
        """Runs a script flagged allow-cross-slot-keys once per node (and DELIVER_BATCH keys) for
        the keys it serves, in one pipeline: ARGV is lead, then each key followed by with_key(key).
        Answers the script's replies."""
        with self._r.pipeline(transaction=False) as p:
            for node, held in by_node(self._r, keys).items():
                for chunk in chunks(held, limits.DELIVER_BATCH):
                    args = [x for key in chunk for x in (key, *with_key(key))]
                    p.execute_command("EVAL", script, 0, *lead, *args, target_nodes=node)
            return p.execute()

    # ---- dispatch checkpoints

    def checkpoint(self, msg_id: int) -> dict[str, str]:
        return self.checkpoint_many([msg_id])[0]

    @REDIS.guarded
    def checkpoint_many(self, msg_ids: Sequence[int]) -> list[dict[str, str]]:
        """Each task's checkpoint (empty if it has none), in one pipeline."""
        with self._r.pipeline(transaction=False) as p:
            for msg_id in msg_ids:
                key = _task(msg_id)
                queue(p, key, "HGETALL", key)
            return cast(list[dict[str, str]], p.execute()) if msg_ids else []

    def save_checkpoint(self, msg_id: int, fields: dict[str, str | int], expires_at_ms: int) -> None:
        self.save_checkpoint_many([(msg_id, fields, expires_at_ms)])

    @REDIS.guarded
    def save_checkpoint_many(self, saves: Sequence[tuple[int, Mapping[str, str | int], int]]) -> None:
        """Writes fields into each task's checkpoint (msg id, fields, the message's expiry), kept a
        day past the expiry; one pipeline."""
        with self._r.pipeline(transaction=False) as p:
            for msg_id, fields, expires_at_ms in saves:
                key = _task(msg_id)
                queue(p, key, "HSET", key, *[x for k, v in fields.items() for x in (k, str(v))])
                queue(p, key, "PEXPIREAT", key, expires_at_ms + 86400_000)
            if saves:
                p.execute()

    # ---- dispatcher assignments (for operators and `pushgrid up`)

    @REDIS.guarded
    def report_partitions(self, owner: str, partitions: Sequence[int]) -> None:
        """Records which task partitions a dispatcher owns now (empty after a revocation)."""
        self._r.hset(_DISPATCHERS, owner, json.dumps(list(partitions)))

    @REDIS.guarded
    def partitions(self) -> dict[str, list[int]]:
        """Task partitions by dispatcher, as they last reported them."""
        reported = cast(dict[str, str], self._r.hgetall(_DISPATCHERS))
        return {owner: json.loads(raw) for owner, raw in reported.items()}
