-- mcp-warden shared quota check: every shared limit of one tools/call, checked before any is
-- committed (a call one limit refuses consumes nothing from the others), in one atomic script.
-- Clock: Redis TIME, one clock for every sidecar replica.
--
-- GCRA is the verified gcra.lua math, unchanged (ms, tat with PX expiry); daily budgets are
-- counters of the current UTC day (Redis clock) in a hash {d = day number, c = count} that
-- expires a minute after the day ends.
--
-- KEYS[i]  one key per limit
-- ARGV     per limit i: ARGV[3i-2] kind 'g' (rate) or 'd' (daily);
--          'g': ARGV[3i-1] emission interval ms (may be fractional), ARGV[3i] burst
--          'd': ARGV[3i-1] calls per day, ARGV[3i] unused
-- returns  allowed: {1, remaining_1, reset_ms_1, ..., remaining_n, reset_ms_n}
--          refused: {0, i, retry_after_ms, smallest daily remaining or -1}
--          (i = the refusing limit with the longest wait)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local day = math.floor(now / 86400000)
local next_day = (day + 1) * 86400000
local new = {}
local out = {1}
local worst = nil
local daily_left = -1
for i = 1, #KEYS do
  local kind = ARGV[3 * i - 2]
  local a = tonumber(ARGV[3 * i - 1])
  local b = tonumber(ARGV[3 * i])
  if kind == 'g' then
    local tat = tonumber(redis.call('GET', KEYS[i])) or now
    if tat < now then tat = now end
    local new_tat = tat + a
    local diff = now - (new_tat - a * b)
    if diff < 0 then
      if worst == nil or -diff > worst[3] then worst = {0, i, math.ceil(-diff)} end
    else
      new[i] = new_tat
      out[#out + 1] = math.floor(diff / a)
      out[#out + 1] = math.ceil(new_tat - now)
    end
  else
    local v = redis.call('HMGET', KEYS[i], 'd', 'c')
    local c = 0
    if tonumber(v[1]) == day then c = tonumber(v[2]) or 0 end
    local left = a - c
    if left < 0 then left = 0 end
    if daily_left < 0 or left < daily_left then daily_left = left end
    if c >= a then
      local retry = next_day - now
      if worst == nil or retry > worst[3] then worst = {0, i, retry} end
    else
      new[i] = c + 1
      out[#out + 1] = a - c - 1
      out[#out + 1] = next_day - now
    end
  end
end
if worst then
  worst[4] = daily_left
  return worst
end
for i = 1, #KEYS do
  if ARGV[3 * i - 2] == 'g' then
    redis.call('SET', KEYS[i], string.format('%.3f', new[i]), 'PX', math.ceil(new[i] - now) + 1)
  else
    redis.call('HSET', KEYS[i], 'd', day, 'c', new[i])
    redis.call('PEXPIREAT', KEYS[i], next_day + 60000)
  end
end
return out
