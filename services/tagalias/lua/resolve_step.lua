-- One bucket of a resolve (walk.py builds the KEYS and ARGV).
-- KEYS: dest, union scratch, platform scratch, all, then the tag sets of tags (nu), tagsAnd (na),
-- the platform sets (np), tagsNot (nn), then the alias keys of the alias candidates (npairs).
-- ARGV: mode ('read'|'build'), ttl ms, sentinel, after (last member read, '' for none), count,
-- explicit ('0' none, '1' ids given, '2' named devices but ids not given), nu, na, np, nn, nids,
-- npairs, ids..., alias1, regid1, ...
-- 'build' makes dest (unless it exists) and answers {'0', {}}. 'read' makes it if missing, then
-- answers up to count members after `after`, with '1' when there may be more and '0' when the
-- bucket is done (dest is then deleted), or {'-1', {}} when dest is missing and the ids were not
-- given. A bucket that fits in what is asked is handed out whole from the set; one that does not
-- is paged by lex range over a sorted copy (every score 0): a position that means the same on
-- every node. A built dest always holds the sentinel, which sorts first and is never handed
-- out, so an empty result still exists until its walk ends.
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

local function compute()
  local inter = {}
  for _, key in ipairs(ands) do inter[#inter + 1] = key end
  if np == 1 then
    inter[#inter + 1] = plats[1]
  elseif np > 1 then
    redis.call('SUNIONSTORE', sp, unpack(plats))
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
    redis.call('SINTERSTORE', dest, dest, all)
    if nu > 0 then
      redis.call('SUNIONSTORE', su, unpack(union))
      redis.call('SINTERSTORE', dest, dest, su)
    end
    if #inter > 0 then redis.call('SINTERSTORE', dest, dest, unpack(inter)) end
  elseif nu > 0 then
    redis.call('SUNIONSTORE', dest, unpack(union))
    if #inter > 0 then redis.call('SINTERSTORE', dest, dest, unpack(inter)) end
  elseif #inter > 0 then
    redis.call('SINTERSTORE', dest, all, unpack(inter))
  else
    redis.call('SUNIONSTORE', dest, all)
  end
  if nn > 0 then redis.call('SDIFFSTORE', dest, dest, unpack(nots)) end
  redis.call('DEL', su, sp)
  redis.call('SADD', dest, sentinel)
  redis.call('PEXPIRE', dest, ttl)
end

-- the one stored set the query is (one tag, or all), if it is that simple
local function stored_set()
  if explicit ~= '0' or na > 0 or np > 0 or nn > 0 then return nil end
  if nu == 1 then return union[1] end
  if nu == 0 then return all end
  return nil
end

local function without_sentinel(members)
  local out = {}
  for _, m in ipairs(members) do
    if m ~= sentinel then out[#out + 1] = m end
  end
  return out
end

if mode == 'build' then
  if redis.call('EXISTS', dest) == 0 then compute() end
  return {'0', {}}
end
if redis.call('EXISTS', dest) == 0 then
  if explicit == '2' then return {'-1', {}} end
  local one = stored_set()
  if one and after == '' and redis.call('SCARD', one) <= count then
    return {'0', redis.call('SMEMBERS', one)}  -- the stored set itself, whole: nothing to copy
  elseif one then
    redis.call('ZUNIONSTORE', dest, 1, one, 'WEIGHTS', 0)  -- its sorted copy, made in one pass
    redis.call('ZADD', dest, 0, sentinel)
  else
    compute()
  end
end
if redis.call('TYPE', dest).ok == 'set' then
  if after == '' and redis.call('SCARD', dest) - 1 <= count then
    local members = without_sentinel(redis.call('SMEMBERS', dest))
    redis.call('UNLINK', dest)
    return {'0', members}
  end
  redis.call('ZUNIONSTORE', dest, 1, dest, 'WEIGHTS', 0)
end
local from = '(' .. (after == '' and sentinel or after)
local res = redis.call('ZRANGE', dest, from, '+', 'BYLEX', 'LIMIT', 0, count)
if #res < count then
  redis.call('UNLINK', dest)  -- freed off Redis's main thread
  return {'0', res}
end
redis.call('PEXPIRE', dest, ttl)
return {'1', res}
