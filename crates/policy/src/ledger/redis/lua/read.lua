-- The figures a decision is made on. ARGV: 3 request id ('' for none), 4 day, 5 month,
-- 6 minute, 7 n, then n scopes with caps or limits, then m and m scopes with rate limits.
-- Returns the request already under the id (12 fields, the first '1', or '0' and blanks), then
-- ten figures per scope: day committed/held micros, committed/held tokens, the same for the
-- month, and the minute's requests and tokens.
sweep()
local out = {}
local rid = ARGV[3]
local found = false
if rid ~= '' then
  local r = redis.call('HMGET', P .. 'req:' .. rid, 'state', 'key', 'action', 'model', 'chain',
    'day', 'month', 'minute', 'held_micros', 'held_tokens', 'expires_at')
  if r[1] then
    found = true
    out[1] = '1'
    for i = 1, 11 do out[#out + 1] = r[i] or '' end
  end
end
if not found then
  out[1] = '0'
  for i = 1, 11 do out[#out + 1] = '' end
end
local n = tonumber(ARGV[7])
local rated = {}
for i = 1, tonumber(ARGV[8 + n]) do rated[ARGV[8 + n + i]] = true end
for i = 1, n do
  local s = ARGV[7 + i]
  for _, period in ipairs({ARGV[4], ARGV[5]}) do
    local v = redis.call('HMGET', P .. 'tot:' .. period, 'c:' .. s, 'h:' .. s, 'C:' .. s, 'H:' .. s)
    for j = 1, 4 do out[#out + 1] = v[j] or '0' end
  end
  if rated[s] then
    local v = redis.call('HMGET', P .. 'rate:' .. ARGV[6], 'r:' .. s, 't:' .. s)
    out[#out + 1] = v[1] or '0'
    out[#out + 1] = v[2] or '0'
  else
    out[#out + 1] = '0'
    out[#out + 1] = '0'
  end
end
return out
