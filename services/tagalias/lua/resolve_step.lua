-- One bucket of a resolve (walk.py builds the KEYS and ARGV).
-- KEYS: dest, union scratch, platform scratch, all, then the tag sets of tags (nu), tagsAnd (na),
-- the platform sets (np), tagsNot (nn), then the alias keys of the alias candidates (npairs).
-- ARGV: mode ('scan'|'build'), ttl ms, sentinel, sscan cursor, count, explicit ('0' none, '1' ids
-- given, '2' named devices but ids not given), nu, na, np, nn, nids, npairs, ids...,
-- alias1, regid1, ...
-- 'build' makes dest (unless it exists) and answers {'0', {}}; 'scan' makes it if missing, then
-- answers one SSCAN of it, or {'-1', {}} when it is missing and the ids were not given.
-- A built dest always holds the sentinel, so an empty result still exists until its walk ends.
local dest, su, sp, all = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local mode, ttl, sentinel, scan, count, explicit = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
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

if mode == 'build' then
  if redis.call('EXISTS', dest) == 0 then compute() end
  return {'0', {}}
end
if redis.call('EXISTS', dest) == 0 then
  if explicit == '2' then return {'-1', {}} end
  compute()
end
local res = redis.call('SSCAN', dest, scan, 'COUNT', count)
if res[1] == '0' then redis.call('DEL', dest) else redis.call('PEXPIRE', dest, ttl) end
return res
