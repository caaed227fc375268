"""The dispatcher server: `python -m services.dispatcher --Ice.Config=...` (IceGrid passes the config).

Five loops in one process: the tasks consumer, the scheduler, the reconciler, the retention
purge and the receipts consumer; the scheduler, the reconciler and the purge act in one
dispatcher at a time (a lease in Redis each).
If a loop dies the process shuts down and IceGrid (activation="always") starts it again.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable

import Ice

from services.common import canaries, ice, kafka_client, limits, logs, redis_client
from services.common.config import CallTimeouts, DispatcherSettings, KafkaSettings, RedisSettings
from services.common.lease import Lease
from services.common.mailbox import Mailbox
from services.common.tasks import TaskPublisher
from services.dispatcher import receipts, worker
from services.dispatcher.delivery import Delivery
from services.dispatcher.reconciler import Reconciler
from services.dispatcher.retention import Retention
from services.dispatcher.runner import TaskRunner
from services.dispatcher.scheduler import Scheduler

log = logging.getLogger("services.dispatcher")

# A fetch waits at most this long for new tasks: brokers that answer a fetch only when its wait
# ends (the local one) would otherwise add up to Kafka's default 500 ms to every push.
TASK_FETCH_WAIT_MS = 10


def _guarded(name: str, loop: Callable[[], None], communicator: Ice.Communicator) -> threading.Thread:
    def run() -> None:
        try:
            loop()
        except Exception:  # any crash: log it and let IceGrid restart the process
            log.exception("%s loop died; shutting down", name)
            communicator.shutdown()

    return threading.Thread(target=run, name=name)


def main() -> int:
    with Ice.initialize(sys.argv) as communicator:
        logs.setup(communicator)
        props = communicator.getProperties()
        me = DispatcherSettings.from_properties(props)
        timeouts = CallTimeouts.from_properties(props)
        name = me.dispatcher_id
        settings = KafkaSettings.from_properties(props)
        redis_settings = RedisSettings.from_properties(props)
        redis = redis_client.cluster(redis_settings)  # one client for the mailbox and the leases
        mailbox = Mailbox(redis)
        db = ice.dbagent(communicator).ice_invocationTimeout(timeouts.dbagent_ms)
        tagalias = ice.tagalias(communicator).ice_invocationTimeout(timeouts.tagalias_ms)
        delivery = Delivery(mailbox, lambda stc_id: ice.stc(communicator, stc_id), lambda: ice.all_stcs(communicator))
        runner = TaskRunner(
            db,
            tagalias,
            mailbox,
            delivery,
            page_size=me.page_size,
            owner=name,
            data_lost=canaries.Watch(redis).missing,
        )
        publisher = TaskPublisher(settings, client_id=f"{name}-scheduler")
        stop = threading.Event()
        loops = [
            _guarded(
                "tasks",
                worker.TaskWorker(
                    lambda listener: kafka_client.consumer(
                        settings,
                        worker.GROUP,
                        settings.tasks_topic,
                        name,
                        listener=listener,
                        max_poll_records=limits.TASK_BATCH,
                        fetch_max_wait_ms=TASK_FETCH_WAIT_MS,
                    ),
                    runner,
                    stop,
                    report=lambda partitions: mailbox.report_partitions(name, partitions),
                ).run,
                communicator,
            ),
            _guarded(
                "scheduler",
                Scheduler(db, publisher, stop, lease=Lease(lambda: redis, "scheduler", name)).run,
                communicator,
            ),
            _guarded(
                "reconciler",
                Reconciler(db, publisher, stop, lease=Lease(lambda: redis, "reconciler", name)).run,
                communicator,
            ),
            _guarded(
                "retention",
                Retention(
                    db,
                    stop,
                    me.report_days,
                    lease=Lease(lambda: redis, "retention", name),
                ).run,
                communicator,
            ),
            _guarded(
                "receipts",
                receipts.ReceiptsWorker(
                    lambda: kafka_client.consumer(
                        settings, receipts.GROUP, settings.receipts_topic, f"{name}-receipts", max_poll_records=500
                    ),
                    db,
                    stop,
                ).run,
                communicator,
            ),
        ]
        for thread in loops:
            thread.start()
        log.info("%s running", name)
        try:
            ice.serve_until_shutdown(communicator)
        finally:
            stop.set()
            for thread in loops:
                thread.join(timeout=60)
            publisher.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
