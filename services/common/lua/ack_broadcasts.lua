#!lua flags=allow-cross-slot-keys
-- Raises the acknowledged-broadcast mark of many devices held on one node, never lowers one.
-- No KEYS: Redis Cluster wants a command's declared keys in one slot, and these are in many
-- slots of this node (the flag lets the script touch them; the caller routes the call here).
-- ARGV: the marks' time to live in ms, then pairs of mark key and the msg id to raise it to.
-- Answers how many marks rose.
local ttl, rose = ARGV[1], 0
for i = 2, #ARGV, 2 do
  local key, new = ARGV[i], tonumber(ARGV[i + 1])
  if new > tonumber(redis.call('GET', key) or '0') then
    redis.call('SET', key, ARGV[i + 1], 'PX', ttl)
    rose = rose + 1
  end
end
return rose
