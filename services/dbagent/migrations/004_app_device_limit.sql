-- rollout: expand
-- An operator's ceiling on an app's devices (setDeviceLimit); 0 means none, as for every app so far.
ALTER TABLE apps ADD COLUMN IF NOT EXISTS device_limit BIGINT NOT NULL DEFAULT 0;
