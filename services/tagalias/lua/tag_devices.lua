-- Gives one tag to many devices of one bucket.
-- KEYS: tag set, bucket tag names, device tags...   ARGV: tag, max, regids... (ARGV[i] <-> KEYS[i])
-- Answers the devices refused because they already have max tags.
local tag, max = ARGV[1], tonumber(ARGV[2])
local refused = {}
for i = 3, #ARGV do
  if redis.call('SISMEMBER', KEYS[i], tag) == 1 or redis.call('SCARD', KEYS[i]) < max then
    redis.call('SADD', KEYS[i], tag)
    redis.call('SADD', KEYS[1], ARGV[i])
  else
    refused[#refused + 1] = ARGV[i]
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('SADD', KEYS[2], tag) end
return refused
