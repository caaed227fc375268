-- rollout: expand
-- purgeExpired finds the messages whose reports are past keeping, oldest first, without a scan.
-- InnoDB builds the index online: the hot path's reads and writes of messages go on meanwhile.
ALTER TABLE messages ADD INDEX IF NOT EXISTS ix_messages_expires (expires_at, msg_id), ALGORITHM=INPLACE, LOCK=NONE;
