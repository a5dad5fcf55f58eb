-- publish_batch.lua: route many messages through one exchange's binding
-- table and LPUSH each to every matching queue, in one atomic step: what
-- publish.lua does for one message, with the table read (SMEMBERS) and
-- each distinct routing key matched once for the whole batch. Runs after
-- topic_match.lua, which is prepended to it.
--
-- KEYS[1]  P+"_kombu.binding."+exchange (SET of rk+sep+pattern+sep+queue)
-- ARGV[1]  exchange type: "direct", "topic" or "fanout" (anything else is
--          routed as direct, as transport.Lookup does)
-- ARGV[2]  P, the global key prefix
-- ARGV[3]  sep
-- ARGV[4]  M, the number of messages
-- ARGV[5 + 3(i-1)]  routing key of message i (1 <= i <= M)
-- ARGV[6 + 3(i-1)]  list suffix for its priority: "" or sep+step
-- ARGV[7 + 3(i-1)]  its envelope
--
-- The list of queue q for message i is ARGV[2] .. q .. its suffix (see
-- publish.lua: those keys cannot be declared in KEYS).
--
-- Each list receives its messages in the order given (one LPUSH with
-- several values pushes them in argument order), so a consumer takes them
-- in that order, as after M single publishes.
--
-- Returns {skipped, n1, ..., nM}: ni is the number of distinct queues
-- message i was pushed to (members with an empty queue are ignored),
-- skipped the number of members that did not split into exactly three
-- parts. Returns {-1, skipped}, having written nothing, when a topic
-- pattern is outside what topic_match understands: the caller routes in
-- Go then.

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

local typ, prefix, sep, m = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local rows, skipped = {}, 0
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local parts = split3(member, sep)
  if #parts ~= 3 then
    skipped = skipped + 1
  else
    rows[#rows + 1] = parts
  end
end

local cache = {}
-- route returns the distinct queues routing key rk goes to, or nil when a
-- pattern is outside topic_match.
local function route(rk)
  local queues, seen = {}, {}
  for _, parts in ipairs(rows) do
    local hit
    if typ == 'fanout' then
      hit = true
    elseif typ == 'topic' then
      hit = topic_match(parts[2], rk, cache)
      if hit == nil then return nil end
    else
      hit = parts[1] == rk
    end
    local q = parts[3]
    if hit and q ~= '' and not seen[q] then
      seen[q] = true
      queues[#queues + 1] = q
    end
  end
  return queues
end

local routes = {}
local lists, values = {}, {}   -- lists in first-use order; values[key] in order
local out = { skipped }
for i = 1, m do
  local base = 4 + 3 * (i - 1)
  local rk = ARGV[base + 1]
  local queues = routes[rk]
  if queues == nil then
    queues = route(rk)
    if queues == nil then return { -1, skipped } end
    routes[rk] = queues
  end
  for _, q in ipairs(queues) do
    local key = prefix .. q .. ARGV[base + 2]
    local vals = values[key]
    if vals == nil then
      vals = {}
      values[key] = vals
      lists[#lists + 1] = key
    end
    vals[#vals + 1] = ARGV[base + 3]
  end
  out[i + 1] = #queues
end
-- unpack is bounded by Lua's C stack: push in chunks.
for _, key in ipairs(lists) do
  local vals = values[key]
  for from = 1, #vals, 1000 do
    redis.call('LPUSH', key, unpack(vals, from, math.min(from + 999, #vals)))
  end
end
return out
