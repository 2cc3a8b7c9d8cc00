-- Shared by every keyscope ledger script. ARGV[1] is the organisation's key prefix
-- (`keyscope:{tag}:`), ARGV[2] the engine's clock in Unix seconds. Amounts travel as decimal
-- strings and go to HINCRBY untouched: Lua numbers are doubles, fine for comparing amounts
-- below 2^53 but not for formatting them back.
local P = ARGV[1]
local NOW = ARGV[2]

local function split(text)
  local out = {}
  for part in string.gmatch(text or '', '[^\n]+') do out[#out + 1] = part end
  return out
end

local function num(text)
  return tonumber(text or '0') or 0
end

local function neg(amount)
  if amount == nil or amount == false or amount == '' or amount == '0' then return '0' end
  if string.sub(amount, 1, 1) == '-' then return string.sub(amount, 2) end
  return '-' .. amount
end

-- Adds an amount to every scope of a chain in its day and month windows: kind 'h' for held,
-- 'c' for committed; the tokens go to the upper-case field.
local function charge(chain, day, month, kind, micros, tokens)
  local big = string.upper(kind)
  for _, scope in ipairs(split(chain)) do
    for _, period in ipairs({day, month}) do
      local totals = P .. 'tot:' .. period
      if micros ~= '0' then redis.call('HINCRBY', totals, kind .. ':' .. scope, micros) end
      if tokens ~= '0' then redis.call('HINCRBY', totals, big .. ':' .. scope, tokens) end
    end
  end
end

-- Committed spend per day, by scope, model and key: what `keyscope spend` reports.
local function account(day, scope, model, key, cost, input, output)
  local spend = P .. 'spend:' .. day
  for _, group in ipairs({{'s', scope}, {'m', model}, {'k', key}}) do
    local field = group[1] .. '\t' .. group[2] .. '\t'
    redis.call('HINCRBY', spend, field .. 'n', 1)
    if cost ~= '0' then redis.call('HINCRBY', spend, field .. 'c', cost) end
    if input ~= '0' then redis.call('HINCRBY', spend, field .. 'i', input) end
    if output ~= '0' then redis.call('HINCRBY', spend, field .. 'o', output) end
  end
  redis.call('SADD', P .. 'days', day)
end

-- Expires the holds whose TTL has passed: their budget comes back.
local function sweep()
  local holds = P .. 'holds'
  local due = redis.call('ZRANGEBYSCORE', holds, '-inf', NOW, 'LIMIT', 0, 512)
  for _, id in ipairs(due) do
    local key = P .. 'req:' .. id
    local r = redis.call('HMGET', key, 'state', 'chain', 'day', 'month', 'held_micros',
      'held_tokens')
    if r[1] == 'held' then
      charge(r[2], r[3], r[4], 'h', neg(r[5]), neg(r[6]))
      redis.call('HSET', key, 'state', 'expired', 'settled_at', NOW)
    end
    redis.call('ZREM', holds, id)
  end
  return #due
end
