-- pushgrid's first schema. Timestamps are ms since the epoch (BIGINT). Enums are stored by name.
-- Identifiers (app keys, registration ids, batch keys, hashes) are ASCII and compared bytewise.
-- No foreign keys: apps are never deleted, and at hundreds of millions of devices and receipts
-- the parent-row checks and locks would cost more than they protect; the store checks parents.
-- IF NOT EXISTS lets a run that failed halfway (MySQL commits each DDL statement) run again.

CREATE TABLE IF NOT EXISTS apps (
    app_key               CHAR(24)     CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    name                  VARCHAR(100) NOT NULL,
    secret_hash           VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    -- 600 is limits.PUSH_QUOTA_DEFAULT; a unit test keeps the two equal.
    push_quota_per_minute INT          NOT NULL DEFAULT 600,
    enabled               BOOLEAN      NOT NULL DEFAULT TRUE,
    created_at            BIGINT       NOT NULL,
    secret_rotated_at     BIGINT       NOT NULL,
    PRIMARY KEY (app_key),
    UNIQUE KEY uq_apps_name (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS devices (
    registration_id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    app_key         CHAR(24)    CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    platform        VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    token_hash      CHAR(64)    CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    created_at      BIGINT      NOT NULL,
    last_seen       BIGINT      NOT NULL,
    PRIMARY KEY (registration_id),
    KEY ix_devices_app (app_key)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS messages (
    msg_id     BIGINT      NOT NULL,
    app_key    CHAR(24)    CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    request    JSON        NOT NULL,
    state      VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    created_at BIGINT      NOT NULL,
    send_at    BIGINT      NOT NULL,
    expires_at BIGINT      NOT NULL,
    PRIMARY KEY (msg_id),
    -- dueMessages: state = 'Scheduled' AND send_at <= ? ORDER BY send_at, msg_id
    KEY ix_messages_due (state, send_at, msg_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS message_stats (
    msg_id         BIGINT NOT NULL,
    targets        BIGINT NOT NULL DEFAULT 0,
    sent_online    BIGINT NOT NULL DEFAULT 0,
    stored_offline BIGINT NOT NULL DEFAULT 0,
    received       BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (msg_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- One row per counted batch: recordStats adds a delta only when its row is new.
CREATE TABLE IF NOT EXISTS stat_batches (
    msg_id      BIGINT       NOT NULL,
    batch_key   VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    recorded_at BIGINT       NOT NULL,
    PRIMARY KEY (msg_id, batch_key)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- One row per device that acknowledged a message: recordReceipts counts only new rows.
CREATE TABLE IF NOT EXISTS receipts (
    msg_id          BIGINT      NOT NULL,
    registration_id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    PRIMARY KEY (msg_id, registration_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
