-- Takes one tag from many devices of one bucket.
-- KEYS: tag set, bucket tag names, device tags...   ARGV: tag, regids... (ARGV[i] <-> KEYS[i + 1])
-- Answers how many devices of the bucket still have the tag.
for i = 2, #ARGV do
  redis.call('SREM', KEYS[i + 1], ARGV[1])
  redis.call('SREM', KEYS[1], ARGV[i])
end
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SREM', KEYS[2], ARGV[1]) end
return redis.call('SCARD', KEYS[1])
