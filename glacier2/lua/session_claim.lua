-- Claims a place for a new partner session of an app, across every gateway.
-- KEYS[1]: the app's sessions (sorted set: session category -> when it lapses, ms).
-- ARGV[1]: now (ms); ARGV[2]: when the new session lapses unless refreshed (ms);
-- ARGV[3]: the app's limit; ARGV[4]: the new session's category; ARGV[5]: the set's lifetime (ms).
-- Returns -1 (claimed) or how many sessions the app holds (refused: at its limit).
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local held = redis.call('ZCARD', KEYS[1])
if held >= tonumber(ARGV[3]) then
  return held
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return -1
