"""The Push server: `python -m services.push --Ice.Config=...` (IceGrid passes the config)."""

from __future__ import annotations

import sys

import Ice

from services.common import ice, logs, redis_client
from services.common.config import CallTimeouts, KafkaSettings, PushSettings, RedisSettings
from services.common.msgid import MsgIdGenerator
from services.common.tasks import TaskPublisher
from services.push.quota import Quota
from services.push.servant import PushServiceI


def main() -> int:
    with Ice.initialize(sys.argv) as communicator:
        logs.setup(communicator)
        props = communicator.getProperties()
        me = PushSettings.from_properties(props)
        timeouts = CallTimeouts.from_properties(props)
        publisher = TaskPublisher(KafkaSettings.from_properties(props), client_id=f"push-{me.worker_id}")
        quota = Quota(lambda: redis_client.cluster(RedisSettings.from_properties(props)))
        servant = PushServiceI(
            ice.dbagent(communicator).ice_invocationTimeout(timeouts.dbagent_ms),
            publisher,
            MsgIdGenerator(worker=me.worker_id),
            quota,
        )
        try:
            ice.serve(communicator, "Push", servant)
        finally:
            publisher.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
