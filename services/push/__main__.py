"""The Push server: `python -m services.push --Ice.Config=...` (IceGrid passes the config)."""

from __future__ import annotations

import logging
import sys

import Ice

from services.common import ice, redis_client
from services.common.config import KafkaSettings, RedisSettings
from services.common.msgid import MsgIdGenerator
from services.common.tasks import TaskPublisher
from services.push.quota import Quota
from services.push.servant import PushServiceI


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    with Ice.initialize(sys.argv) as communicator:
        props = communicator.getProperties()
        worker = props.getPropertyAsInt("PushGrid.Push.WorkerId")
        publisher = TaskPublisher(KafkaSettings.from_properties(props), client_id=f"push-{worker}")
        quota = Quota(lambda: redis_client.cluster(RedisSettings.from_properties(props)))
        servant = PushServiceI(
            ice.dbagent(communicator).ice_invocationTimeout(10000), publisher, MsgIdGenerator(worker=worker), quota
        )
        try:
            ice.serve(communicator, "Push", servant)
        finally:
            publisher.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
