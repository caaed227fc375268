-- Raises the device's acknowledged-broadcast mark, never lowers it.
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local new = tonumber(ARGV[1])
if new > cur then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return new end
return cur
