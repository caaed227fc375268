-- rollout: expand
-- When devices received each message (getCurve): its receipts counted per bucket of time after
-- messages.send_at, a bucket starting offset_s seconds after it (services/dbagent/curve.py says
-- how wide). recordTimedReceipts adds a receipt here in the transaction that counts it in
-- message_stats.received, so a replayed batch adds nothing to either. A new table: releases
-- before this one never read or write it, and count receipts without it while both run.
CREATE TABLE IF NOT EXISTS receipt_curve (
    msg_id   BIGINT NOT NULL,
    offset_s INT    NOT NULL,
    received BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (msg_id, offset_s)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
