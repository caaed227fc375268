-- Counts a login attempt before its secret is checked, unless a limit is reached already.
-- KEYS[1]: the address's failures this window; KEYS[2]: the (address, app key) pair's.
-- ARGV[1]: the address's limit; ARGV[2]: the pair's limit; ARGV[3]: the keys' lifetime (ms).
-- Returns 0 (counted: check the secret), 1 (the address is over its limit), 2 (the pair is).
-- One script, so parallel attempts cannot all pass the check before any of them is counted.
local by_address = tonumber(redis.call('GET', KEYS[1]) or '0')
if by_address >= tonumber(ARGV[1]) then
  return 1
end
local by_pair = tonumber(redis.call('GET', KEYS[2]) or '0')
if by_pair >= tonumber(ARGV[2]) then
  return 2
end
redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 0
