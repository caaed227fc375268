-- rollout: expand
-- deviceCount reads a counter that registerDevices and unregisterDevice keep in their own
-- transaction, instead of a COUNT(*) over the app's devices (hundreds of millions of rows).
-- The UPDATE counts what is there; running it again counts again. Devices that a release before
-- this one registers while both run (a rolling upgrade) are not counted until it runs again.
ALTER TABLE apps ADD COLUMN IF NOT EXISTS device_count BIGINT NOT NULL DEFAULT 0;
UPDATE apps SET device_count = (SELECT COUNT(*) FROM devices WHERE devices.app_key = apps.app_key);
