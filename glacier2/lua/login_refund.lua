-- Gives back what login_attempt.lua counted, for an attempt that was not a failure: the right
-- secret (the pair's count is cleared, its earlier typos forgiven) or a check that never ran.
-- KEYS[1]: the address's failures this window; KEYS[2]: the (address, app key) pair's.
-- ARGV[1]: 1 to clear the pair's count, 0 to take one off it.
if tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then
  redis.call('DECR', KEYS[1])
end
if ARGV[1] == '1' then
  redis.call('DEL', KEYS[2])
elseif tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then
  redis.call('DECR', KEYS[2])
end
return 0
