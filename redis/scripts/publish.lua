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
-- Returns {n, skipped}: n is the number of distinct queues the message was
-- pushed to (members with an empty queue are ignored), skipped the number
-- of members that did not split into exactly three parts (ignored too).
-- Returns {-1, skipped}, having written nothing, when a topic pattern is
-- outside what topic_match understands: the caller routes in Go then.

local function split3(s, sep)
  local parts, start = {}, 1
  while #parts < 4 do
    local i, j = string.find(s, sep, start, true)
    if not i then
      parts[#parts + 1] = string.sub(s, start)
      return parts
    end
    parts[#parts + 1] = string.sub(s, start, i - 1)
    start = j + 1
  end
  return parts
end

local typ, rk, sep = ARGV[1], ARGV[2], ARGV[5]
local members = redis.call('SMEMBERS', KEYS[1])
local queues, seen, skipped = {}, {}, 0
local cache = {}
for _, m in ipairs(members) do
  local parts = split3(m, sep)
  if #parts ~= 3 then
    skipped = skipped + 1
  else
    local hit
    if typ == 'fanout' then
      hit = true
    elseif typ == 'topic' then
      hit = topic_match(parts[2], rk, cache)
      if hit == nil then return { -1, skipped } end
    else
      hit = parts[1] == rk
    end
    local q = parts[3]
    if hit and q ~= '' and not seen[q] then
      seen[q] = true
      queues[#queues + 1] = q
    end
  end
end
for _, q in ipairs(queues) do
  redis.call('LPUSH', ARGV[4] .. q .. ARGV[6], ARGV[3])
end
return { #queues, skipped }
