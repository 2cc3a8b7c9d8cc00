-- Recomputes the organisation's running totals from its requests, all in one atomic step, and
-- answers with every total that differs ('scope period field stored expected'). With
-- ARGV[3] = 'rebuild' it also writes the recomputed totals. Returns the number of requests
-- read, then the differences.
local expected = {}
local function add(period, field, amount)
  if amount == 0 then return end
  local t = expected[period]
  if not t then t = {}; expected[period] = t end
  t[field] = (t[field] or 0) + amount
end
local function add_chain(chain, day, month, kind, micros, tokens)
  for _, scope in ipairs(split(chain)) do
    for _, period in ipairs({day, month}) do
      add(period, kind .. ':' .. scope, micros)
      add(period, string.upper(kind) .. ':' .. scope, tokens)
    end
  end
end
local requests = 0
local cursor = '0'
repeat
  local page = redis.call('SCAN', cursor, 'MATCH', P .. 'req:*', 'COUNT', 1000)
  cursor = page[1]
  for _, key in ipairs(page[2]) do
    requests = requests + 1
    local r = redis.call('HMGET', key, 'state', 'chain', 'day', 'month', 'held_micros',
      'held_tokens', 'cost_micros', 'input_tokens', 'cached_input_tokens', 'output_tokens')
    if r[1] == 'held' then
      add_chain(r[2], r[3], r[4], 'h', num(r[5]), num(r[6]))
    elseif r[1] == 'committed' then
      add_chain(r[2], r[3], r[4], 'c', num(r[7]), num(r[8]) + num(r[9]) + num(r[10]))
    end
  end
until cursor == '0'
local out = {tostring(requests)}
local stored_keys = {}
cursor = '0'
repeat
  local page = redis.call('SCAN', cursor, 'MATCH', P .. 'tot:*', 'COUNT', 1000)
  cursor = page[1]
  for _, key in ipairs(page[2]) do stored_keys[#stored_keys + 1] = key end
until cursor == '0'
local seen = {}
for _, key in ipairs(stored_keys) do
  local period = string.sub(key, #P + 5)
  local want = expected[period] or {}
  local fields = redis.call('HGETALL', key)
  for i = 1, #fields, 2 do
    local field, have = fields[i], num(fields[i + 1])
    seen[period .. '\n' .. field] = true
    local expect = want[field] or 0
    if have ~= expect then
      out[#out + 1] = period .. ' ' .. field .. ' ' .. string.format('%.0f', have) .. ' ' ..
        string.format('%.0f', expect)
    end
  end
end
for period, fields in pairs(expected) do
  for field, amount in pairs(fields) do
    if not seen[period .. '\n' .. field] then
      out[#out + 1] = period .. ' ' .. field .. ' 0 ' .. string.format('%.0f', amount)
    end
  end
end
if ARGV[3] == 'rebuild' then
  for _, key in ipairs(stored_keys) do redis.call('DEL', key) end
  for period, fields in pairs(expected) do
    for field, amount in pairs(fields) do
      redis.call('HSET', P .. 'tot:' .. period, field, string.format('%.0f', amount))
    end
  end
end
return out
