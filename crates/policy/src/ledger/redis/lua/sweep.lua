-- Expires every hold of the organisation whose TTL has passed; returns how many.
local total = 0
while true do
  local n = sweep()
  total = total + n
  if n < 512 then break end
end
return total
