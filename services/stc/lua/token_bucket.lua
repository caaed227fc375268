-- Takes up to ARGV[4] tokens from a bucket that refills ARGV[1] tokens a second up to ARGV[2].
-- KEYS[1]: the bucket (a hash: tokens, at). ARGV[3]: now (ms).
-- Returns {granted, wait}: how many were taken, and the ms until the next token if not all.
local rate, burst, now, wanted = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(bucket[1]) or burst
local at = tonumber(bucket[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
local granted = math.min(wanted, math.floor(tokens))
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
local wait = 0
if granted < wanted then
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
return {granted, wait}
