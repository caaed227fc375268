-- Gives one device tags, all or none: refused when the device would pass max tags.
-- KEYS: device tags, bucket tag names, tag sets...   ARGV: regid, max, tags... (ARGV[i] <-> KEYS[i])
-- Answers {new tags, tags now}, or {-1, tags now} when refused.
local id, max = ARGV[1], tonumber(ARGV[2])
local new = 0
for i = 3, #ARGV do
  if redis.call('SISMEMBER', KEYS[1], ARGV[i]) == 0 then new = new + 1 end
end
local have = redis.call('SCARD', KEYS[1])
if new > 0 and have + new > max then return {-1, have} end
for i = 3, #ARGV do
  redis.call('SADD', KEYS[1], ARGV[i])
  redis.call('SADD', KEYS[i], id)
  redis.call('SADD', KEYS[2], ARGV[i])
end
return {new, have + new}
