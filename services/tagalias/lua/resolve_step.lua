-- One bucket of a resolve (walk.py builds the KEYS and ARGV).
-- KEYS: dest, union scratch, platform scratch, all, then the tag sets of tags (nu), tagsAnd (na),
-- the platform sets (np), tagsNot (nn), then the alias keys of the alias candidates (npairs).
-- ARGV: mode ('read'|'build'), ttl ms, sentinel, after (last member read, '' for none), count,
-- explicit ('0' none, '1' ids given, '2' named devices but ids not given), nu, na, np, nn, nids,
-- npairs, ids..., alias1, regid1, ...
-- dest is a sorted set, every score 0, so it is read by lex range: a position that means the
-- same on every node. 'build' makes dest (unless it exists) and answers {'0', {}}; 'read' makes
-- it if missing, then answers up to count members after `after`, with '1' when there may be
-- more and '0' when the bucket is done (dest is then deleted), or {'-1', {}} when dest is
-- missing and the ids were not given.
-- A built dest always holds the sentinel, which sorts first and is never read, so an empty
-- result still exists until its walk ends.
local dest, su, sp, all = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local mode, ttl, sentinel, after, count, explicit = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
local nu, na, np, nn = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local nids, npairs = tonumber(ARGV[11]), tonumber(ARGV[12])
local k = 5
local function take(n)
  local t = {}
  for i = k, k + n - 1 do t[#t + 1] = KEYS[i] end
  k = k + n
  return t
end
local union, ands, plats, nots = take(nu), take(na), take(np), take(nn)
local alias_keys = take(npairs)

-- ZUNIONSTORE / ZINTERSTORE of sets or sorted sets into target, every score 0
local function store(cmd, target, sources)
  local args = {cmd, target, #sources}
  for _, key in ipairs(sources) do args[#args + 1] = key end
  args[#args + 1] = 'WEIGHTS'
  for _ = 1, #sources do args[#args + 1] = 0 end
  redis.call(unpack(args))
end

local function with(first, rest)
  local t = {first}
  for _, key in ipairs(rest) do t[#t + 1] = key end
  return t
end

local function compute()
  local inter = {}
  for _, key in ipairs(ands) do inter[#inter + 1] = key end
  if np == 1 then
    inter[#inter + 1] = plats[1]
  elseif np > 1 then
    store('ZUNIONSTORE', sp, plats)
    inter[#inter + 1] = sp
  end
  redis.call('DEL', dest)
  if explicit == '1' then
    local a = 13
    for _ = 1, nids do redis.call('SADD', dest, ARGV[a]); a = a + 1 end
    for i = 1, npairs do
      if redis.call('GET', alias_keys[i]) == ARGV[a] then redis.call('SADD', dest, ARGV[a + 1]) end
      a = a + 2
    end
    -- a registration id from the caller counts only if it is a device of this app
    store('ZINTERSTORE', dest, {dest, all})
    if nu > 0 then
      store('ZUNIONSTORE', su, union)
      store('ZINTERSTORE', dest, {dest, su})
    end
    if #inter > 0 then store('ZINTERSTORE', dest, with(dest, inter)) end
  elseif nu > 0 then
    store('ZUNIONSTORE', dest, union)
    if #inter > 0 then store('ZINTERSTORE', dest, with(dest, inter)) end
  elseif #inter > 0 then
    store('ZINTERSTORE', dest, with(all, inter))
  else
    store('ZUNIONSTORE', dest, {all})
  end
  if nn > 0 then redis.call('ZDIFFSTORE', dest, 1 + nn, dest, unpack(nots)) end
  redis.call('DEL', su, sp)
  redis.call('ZADD', dest, 0, sentinel)
  redis.call('PEXPIRE', dest, ttl)
end

if mode == 'build' then
  if redis.call('EXISTS', dest) == 0 then compute() end
  return {'0', {}}
end
if redis.call('EXISTS', dest) == 0 then
  if explicit == '2' then return {'-1', {}} end
  compute()
end
local from = '(' .. (after == '' and sentinel or after)
local res = redis.call('ZRANGE', dest, from, '+', 'BYLEX', 'LIMIT', 0, count)
if #res < count then
  redis.call('DEL', dest)
  return {'0', res}
end
redis.call('PEXPIRE', dest, ttl)
return {'1', res}
