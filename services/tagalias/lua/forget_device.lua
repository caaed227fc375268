-- KEYS: device tags, device alias, all, platform sets...   ARGV: regid
-- Runs once the device has no tags left; answers false if a tag came back meanwhile, else the
-- alias the device had ('' for none).
if redis.call('SCARD', KEYS[1]) > 0 then return false end
local alias = redis.call('GET', KEYS[2])
redis.call('DEL', KEYS[2])
for i = 3, #KEYS do redis.call('SREM', KEYS[i], ARGV[1]) end
return alias or ''
