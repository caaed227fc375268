-- rollout: expand
-- What went wrong with a message after it was accepted (noteMessageError), shown with its report;
-- '' for none, as for every message so far. An instant column add: the table is not rebuilt.
ALTER TABLE message_stats ADD COLUMN IF NOT EXISTS error VARCHAR(255) NOT NULL DEFAULT '', ALGORITHM=INSTANT;
