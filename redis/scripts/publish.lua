-- publish.lua: route a message through an exchange's binding table and
-- LPUSH it to every matching queue, in one atomic step (Kombu's
-- basic_publish: SMEMBERS, then one LPUSH per queue). Runs after
-- topic_match.lua, which is prepended to it.
--
-- KEYS[1]  P+"_kombu.binding."+exchange (SET of rk+sep+pattern+sep+queue)
-- ARGV[1]  exchange type: "direct", "topic" or "fanout" (anything else is
--          routed as direct, as transport.Lookup does)
-- ARGV[2]  routing key
-- ARGV[3]  envelope
-- ARGV[4]  P, the global key prefix
-- ARGV[5]  sep
-- ARGV[6]  list suffix for the message's priority: "" or sep+step
--
-- The list of queue q is ARGV[4] .. q .. ARGV[6]: those keys cannot be
-- declared in KEYS, since they are found here (Cluster is not supported).
--
-- Returns n, the number of distinct queues the message was pushed to
-- (members with an empty queue are ignored), or -1, having written
-- nothing, when a topic pattern is outside what topic_match understands:
-- the caller routes in Go then. When some members did not split into
-- exactly three parts (they are ignored too), it returns {n, skipped}
-- instead, skipped being their number (a plain integer is one reply the
-- client reads without building an array).
--
-- A member is split by finding its separators, without a table of parts:
-- only the parts the exchange type needs become strings. A direct
-- exchange compares the routing key part with ARGV[2]; a topic exchange
-- matches the pattern part. The table of queues seen is made only when a
-- second queue matches.

local find, sub = string.find, string.sub
local typ, rk, sep = ARGV[1], ARGV[2], ARGV[5]
local direct = typ ~= 'fanout' and typ ~= 'topic'
local topic = typ == 'topic'
local rklen = #rk
local members = redis.call('SMEMBERS', KEYS[1])
local nm = #members
local cache
if topic and nm > 1 then cache = {} end
local n, skipped, first, queues, seen = 0, 0
for i = 1, nm do
  local m = members[i]
  -- m is rk .. sep .. pattern .. sep .. queue: a and b frame the first
  -- separator, c and d the second; a third makes m malformed.
  local a, b = find(m, sep, 1, true)
  local c, d
  if a then c, d = find(m, sep, b + 1, true) end
  if not c or find(m, sep, d + 1, true) then
    skipped = skipped + 1
  else
    local hit
    if direct then
      hit = a == rklen + 1 and sub(m, 1, a - 1) == rk
    elseif topic then
      hit = topic_match(sub(m, b + 1, c - 1), rk, cache)
      if hit == nil then
        if skipped > 0 then return { -1, skipped } end
        return -1
      end
    else
      hit = true
    end
    if hit and d < #m then -- a non-empty queue
      local q = sub(m, d + 1)
      if n == 0 then
        first, n = q, 1
      elseif q ~= first and not (seen and seen[q]) then
        if seen == nil then seen, queues = { [first] = true }, { first } end
        seen[q] = true
        n = n + 1
        queues[n] = q
      end
    end
  end
end
if n == 1 then
  redis.call('LPUSH', ARGV[4] .. first .. ARGV[6], ARGV[3])
elseif n > 1 then
  for j = 1, n do
    redis.call('LPUSH', ARGV[4] .. queues[j] .. ARGV[6], ARGV[3])
  end
end
if skipped > 0 then return { n, skipped } end
return n
