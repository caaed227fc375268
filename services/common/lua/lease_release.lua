-- Gives a lease up, if this holder holds it. KEYS[1]: the lease. ARGV[1]: the holder's name.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 0
