"""What a failing backend looks like to a caller: Unavailable(backend), decided in one place.

A call that could not reach MySQL, Redis, Kafka or another pushgrid service did nothing the
caller can rely on, so it is reported as the named, retryable `PushGrid.Unavailable`. Each
backend has one `Backend` value (the Ice services' in `services.common.ice`, MySQL's beside its
pool, Redis's and Kafka's here) naming the client errors that mean "not reached"; code catches
those errors only through it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from kafka.errors import KafkaError
from redis.exceptions import RedisClusterException, RedisError

from services.common.contract import PushGrid

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

REASON_MAX_CHARS = 500


@dataclass(frozen=True)
class Backend:
    """One backend: its name (Unavailable.backend) and the client errors meaning it failed."""

    name: str
    errors: tuple[type[BaseException], ...]

    def unavailable(self, exc: BaseException) -> PushGrid.Unavailable:
        """The Unavailable a caller gets for exc: one line naming the backend and the kind of
        failure. The details (addresses, the driver's message) go to this server's log only:
        a caller can act on "try again", and a partner has no business with our addresses."""
        log.warning("%s failed: %r", self.name, exc)
        reason = f"{self.name} did not answer ({type(exc).__name__}); try again"[:REASON_MAX_CHARS]
        return PushGrid.Unavailable(reason=reason, backend=self.name)

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Turns this backend's errors raised inside the block into Unavailable."""
        try:
            yield
        except self.errors as exc:
            raise self.unavailable(exc) from None

    def guarded(self, fn: Callable[P, R]) -> Callable[P, R]:
        """guard() around every call of fn, for stores whose every method reaches the backend."""

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with self.guard():
                return fn(*args, **kwargs)

        return wrapper


REDIS = Backend("redis", (RedisError, RedisClusterException))
KAFKA = Backend("kafka", (KafkaError,))
