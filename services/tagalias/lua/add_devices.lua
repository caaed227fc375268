-- Adds devices to the bucket's all set and to their platform set, out of the other platforms'.
-- KEYS: all, platform sets (in enumerator order)...
-- ARGV: regid1, platform index1 (0-based, into the platform sets), regid2, index2, ...
for i = 1, #ARGV, 2 do
  local id, pos = ARGV[i], tonumber(ARGV[i + 1])
  redis.call('SADD', KEYS[1], id)
  for p = 2, #KEYS do
    if p - 2 == pos then redis.call('SADD', KEYS[p], id) else redis.call('SREM', KEYS[p], id) end
  end
end
return #ARGV / 2
