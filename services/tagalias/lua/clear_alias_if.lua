-- KEYS: device alias   ARGV: alias.  Clears the device's alias only if it is still this one.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
