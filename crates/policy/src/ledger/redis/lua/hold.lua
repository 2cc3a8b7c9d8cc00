-- Checks every cap and limit again and writes the hold, or changes nothing and answers
-- 'changed' when the request id was taken or a cap would be passed since the figures were
-- read. ARGV: 3 request id, 4 day, 5 month, 6 minute, 7 expires at, 8 micros, 9 tokens,
-- 10 chain, 11 rated scopes, 12 key, 13 action, 14 model, 15 price, 16 time, 17 n, then per
-- capped scope: scope, day micros, day tokens, month micros, month tokens, requests per
-- minute, tokens per minute ('' where there is no cap).
sweep()
local req = P .. 'req:' .. ARGV[3]
if redis.call('EXISTS', req) == 1 then return 'changed' end
local micros, tokens = num(ARGV[8]), num(ARGV[9])
local days, months = P .. 'tot:' .. ARGV[4], P .. 'tot:' .. ARGV[5]
local rates = P .. 'rate:' .. ARGV[6]
local function over(totals, s, cap_micros, cap_tokens)
  local v = redis.call('HMGET', totals, 'c:' .. s, 'h:' .. s, 'C:' .. s, 'H:' .. s)
  if cap_micros ~= '' and num(v[1]) + num(v[2]) + micros > num(cap_micros) then return true end
  if cap_tokens ~= '' and num(v[3]) + num(v[4]) + tokens > num(cap_tokens) then return true end
  return false
end
for i = 0, tonumber(ARGV[17]) - 1 do
  local a = 18 + i * 7
  local s = ARGV[a]
  if over(days, s, ARGV[a + 1], ARGV[a + 2]) or over(months, s, ARGV[a + 3], ARGV[a + 4]) then
    return 'changed'
  end
  if ARGV[a + 5] ~= '' or ARGV[a + 6] ~= '' then
    local v = redis.call('HMGET', rates, 'r:' .. s, 't:' .. s)
    if ARGV[a + 5] ~= '' and num(v[1]) + 1 > num(ARGV[a + 5]) then return 'changed' end
    if ARGV[a + 6] ~= '' and num(v[2]) + tokens > num(ARGV[a + 6]) then return 'changed' end
  end
end
redis.call('HSET', req, 'state', 'held', 'key', ARGV[12], 'action', ARGV[13], 'model', ARGV[14],
  'chain', ARGV[10], 'day', ARGV[4], 'month', ARGV[5], 'minute', ARGV[6], 'held_micros', ARGV[8],
  'held_tokens', ARGV[9], 'price', ARGV[15], 'time', ARGV[16], 'expires_at', ARGV[7],
  'cost_micros', '0', 'input_tokens', '0', 'cached_input_tokens', '0', 'output_tokens', '0')
redis.call('ZADD', P .. 'holds', ARGV[7], ARGV[3])
charge(ARGV[10], ARGV[4], ARGV[5], 'h', ARGV[8], ARGV[9])
if ARGV[11] ~= '' then
  for _, s in ipairs(split(ARGV[11])) do
    redis.call('HINCRBY', rates, 'r:' .. s, 1)
    if ARGV[9] ~= '0' then redis.call('HINCRBY', rates, 't:' .. s, ARGV[9]) end
  end
  redis.call('EXPIRE', rates, 180)
end
return 'held'
