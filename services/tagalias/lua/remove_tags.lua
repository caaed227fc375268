-- Takes tags from one device; a tag left without members in the bucket leaves its tag names.
-- KEYS: device tags, bucket tag names, tag sets...   ARGV: regid, tags... (ARGV[i] <-> KEYS[i + 1])
-- Answers how many tags the device has left.
local id = ARGV[1]
for i = 2, #ARGV do
  local tk = KEYS[i + 1]
  redis.call('SREM', KEYS[1], ARGV[i])
  redis.call('SREM', tk, id)
  if redis.call('EXISTS', tk) == 0 then redis.call('SREM', KEYS[2], ARGV[i]) end
end
return redis.call('SCARD', KEYS[1])
