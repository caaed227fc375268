-- Takes a lease that nobody holds, or keeps one this holder holds; another holder's is left alone.
-- KEYS[1]: the lease. ARGV[1]: the holder's name; ARGV[2]: how long the lease lasts (ms).
-- Returns 1 if ARGV[1] holds the lease after the call, else 0.
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
