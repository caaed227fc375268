"""The STC server: `python -m services.stc --Ice.Config=...` (IceGrid passes the config).

The asyncio loop (engine and device connections) runs in a thread of its own; the main thread
serves Ice until the node's Process facet or SIGTERM shuts the communicator down. Then devices
are closed with 1012 so they reconnect to another STC process at once, presence is cleared and
acks and receipts are flushed.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading

import Ice
import uvloop

from services.common import logs
from services.common.config import KafkaSettings, RedisSettings, STCSettings
from services.common.fdlimit import raise_open_files
from services.common.ice import dbagent, serve, tagalias
from services.common.mailbox import Mailbox
from services.common.redis_client import cluster
from services.stc import metrics
from services.stc.directory import IceDirectory
from services.stc.engine import Engine, Settings
from services.stc.receipts import KafkaReceipts
from services.stc.registration import Rate, RegistrationGate
from services.stc.servant import STCI, Identity
from services.stc.transport import Transport


async def _start(engine: Engine, transport: Transport) -> None:
    engine.start()
    await transport.start()


async def _watch_shutdown(communicator: Ice.Communicator, engine: Engine) -> None:
    """Ice's shutdown waits for calls in progress; a broadcast spread over hours must end now."""
    while not communicator.isShutdown():
        await asyncio.sleep(0.5)
    engine.stop_spreading()


async def _stop(engine: Engine, transport: Transport) -> None:
    await transport.close()
    await engine.shutdown()


def main() -> int:
    raise_open_files()
    with Ice.initialize(sys.argv) as communicator:
        logs.setup(communicator)
        props = communicator.getProperties()
        me = STCSettings.from_properties(props)
        loop = uvloop.new_event_loop()  # libuv: a fraction of asyncio's cost per socket event
        thread = threading.Thread(target=loop.run_forever, name="stc-loop", daemon=True)
        thread.start()
        receipts = KafkaReceipts(KafkaSettings.from_properties(props), me.stc_id)
        redis = cluster(RedisSettings.from_properties(props))
        engine = Engine(
            Settings(stc_id=me.stc_id),
            IceDirectory(dbagent(communicator), tagalias(communicator)),
            Mailbox(redis),
            receipts,
            gate=RegistrationGate(redis, Rate(*me.registrations_per_address), Rate(*me.registrations_per_app)),
        )
        transport = Transport(engine, me.device_host, me.device_port)
        metrics.CONNECTIONS.set_function(lambda: transport.connections)
        metrics.DEVICES.set_function(lambda: engine.connections)
        asyncio.run_coroutine_threadsafe(_start(engine, transport), loop).result()
        watcher = asyncio.run_coroutine_threadsafe(_watch_shutdown(communicator, engine), loop)
        logging.info("%s: devices on ws://%s:%d/v1/device", me.stc_id, me.device_host, me.device_port)
        try:
            serve(
                communicator,
                "STC",
                STCI(engine, loop, Identity(me.stc_id, me.node, f"ws://{me.device_host}:{me.device_port}/")),
                identity=me.stc_id,
            )
        finally:
            watcher.cancel()
            asyncio.run_coroutine_threadsafe(_stop(engine, transport), loop).result(timeout=30)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
            receipts.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
