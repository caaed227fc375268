-- Deletes presence only if it still names this STC: a device that moved on keeps its new home.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
