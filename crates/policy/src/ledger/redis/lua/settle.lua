-- Commits (ARGV[4] = 'commit') or releases a request. ARGV: 3 request id, 5 cost,
-- 6 tokens, 7 input, 8 cached input, 9 output, 10 input and cached input.
-- Returns the state the request was in before, and for a committed one its cost.
local req = P .. 'req:' .. ARGV[3]
local r = redis.call('HMGET', req, 'state', 'chain', 'day', 'month', 'held_micros',
  'held_tokens', 'cost_micros', 'key', 'model')
if not r[1] then return {'unknown', '0'} end
if r[1] == 'committed' or r[1] == 'released' then return {r[1], r[7] or '0'} end
if r[1] == 'held' then
  charge(r[2], r[3], r[4], 'h', neg(r[5]), neg(r[6]))
  redis.call('ZREM', P .. 'holds', ARGV[3])
end
if ARGV[4] == 'commit' then
  charge(r[2], r[3], r[4], 'c', ARGV[5], ARGV[6])
  redis.call('HSET', req, 'state', 'committed', 'cost_micros', ARGV[5], 'input_tokens', ARGV[7],
    'cached_input_tokens', ARGV[8], 'output_tokens', ARGV[9], 'settled_at', NOW)
  account(r[3], split(r[2])[1], r[9], r[8], ARGV[5], ARGV[10], ARGV[9])
else
  redis.call('HSET', req, 'state', 'released', 'settled_at', NOW)
end
return {r[1], ARGV[5]}
