#!lua flags=allow-cross-slot-keys
-- Extends the presence of many devices held on one node, each only if it still names this STC
-- (or has lapsed). No KEYS: Redis Cluster wants a command's declared keys in one slot, and these
-- are in many slots of this node (the flag lets the script touch them; the caller routes the
-- call here). ARGV: the STC id, the time to live in seconds, then the presence keys.
-- Answers the keys another STC holds now.
local stc, ttl, taken = ARGV[1], ARGV[2], {}
for i = 3, #ARGV do
  local cur = redis.call('GET', ARGV[i])
  if cur == false or cur == stc then
    redis.call('SET', ARGV[i], stc, 'EX', ttl)
  else
    taken[#taken + 1] = ARGV[i]
  end
end
return taken
