-- Writes one request as another ledger held it (a migration, or spend recorded outside a
-- reservation), with its totals; a request id already here is left alone ('skipped').
-- ARGV: 3 request id, 4 state, 5 key, 6 action, 7 model, 8 chain, 9 day, 10 month, 11 minute,
-- 12 time, 13 expires at, 14 held micros, 15 held tokens, 16 price, 17 cost, 18 input,
-- 19 cached input, 20 output, 21 input and cached input, 22 all tokens.
local req = P .. 'req:' .. ARGV[3]
if redis.call('EXISTS', req) == 1 then return 'skipped' end
redis.call('HSET', req, 'state', ARGV[4], 'key', ARGV[5], 'action', ARGV[6], 'model', ARGV[7],
  'chain', ARGV[8], 'day', ARGV[9], 'month', ARGV[10], 'minute', ARGV[11], 'time', ARGV[12],
  'expires_at', ARGV[13], 'held_micros', ARGV[14], 'held_tokens', ARGV[15], 'price', ARGV[16],
  'cost_micros', ARGV[17], 'input_tokens', ARGV[18], 'cached_input_tokens', ARGV[19],
  'output_tokens', ARGV[20])
if ARGV[4] == 'held' then
  redis.call('ZADD', P .. 'holds', ARGV[13], ARGV[3])
  charge(ARGV[8], ARGV[9], ARGV[10], 'h', ARGV[14], ARGV[15])
elseif ARGV[4] == 'committed' then
  charge(ARGV[8], ARGV[9], ARGV[10], 'c', ARGV[17], ARGV[22])
  account(ARGV[9], split(ARGV[8])[1], ARGV[7], ARGV[5], ARGV[17], ARGV[21], ARGV[20])
end
return 'written'
