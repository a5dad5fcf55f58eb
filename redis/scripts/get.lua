-- get.lua: take up to ARGV[3] messages, step-major, and record each as
-- unacked in the same atomic step (Kombu's BRPOP/RPOP followed by
-- QoS.append, without the window in which a crash loses the popped
-- message). One take is what Backend.Get does; several in one call are
-- Backend.GetBatch, taken exactly as that many successive single takes
-- would be.
--
-- KEYS[1]    P+unacked        (HASH: tag -> [envelope, exchange, routing_key])
-- KEYS[2]    P+unacked_index  (ZSET: tag scored by receive time)
-- KEYS[3]    P+malformed list (raw messages that cannot be recorded)
-- KEYS[4]    P+"kombu-go.get."+<nonce>: this call's receipt (see below)
-- KEYS[5 ..]  receipts of earlier calls whose replies arrived: deleted
-- ARGV[1]    "1": record the messages as unacked; "2": the same, and
--            this is a first attempt that no one will send again by
--            itself, so there is no receipt to look for; "0": no_ack
-- ARGV[2]    the receive time as Unix float seconds (text), the ZADD score
-- ARGV[3]    the most messages to take (at least 1)
-- ARGV[4]    "1": after each take, move its queue to the end of the queue
--            order (Kombu's round_robin cycle); "0": fixed order; "2":
--            the queues are the head of a longer order, rotated as "1"
--            does: a taken queue moves past their end, out of this call
-- ARGV[5]    N, the number of queues
-- ARGV[6]    S, the number of priority steps
-- ARGV[7]    T, the number of tags to settle
-- ARGV[8]    P, the global key prefix
-- ARGV[8+s]  the list suffix of step s (1 <= s <= S, lowest step first):
--            "" or sep+step
-- ARGV[8+S+q]  the name of queue q (1 <= q <= N), in the caller's order
-- ARGV[8+S+N+i]  tag i to settle (1 <= i <= T): its unacked records are
--            deleted first (ZREM KEYS[2], HDEL KEYS[1]: acks riding the
--            fetch), whatever else the call does
--
-- The lists are taken from step-major: every queue's step-1 list in queue
-- order, then every queue's next step, ... The list of queue q at step s is
-- P .. q .. suffix s, the formula of keys.queueKey; the names are built
-- here rather than sent in KEYS (as publish.lua does), so a consumer of a
-- thousand queues sends a thousand names per call, not four thousand
-- (Cluster is not supported).
--
-- Returns nil when every list is empty, else a flat array of triples
-- {status, queue, message, status, queue, message, ...} in take order:
--   status 1  message taken with RPOP from a list of queue; if ARGV[1] is
--             "1", ZADD KEYS[2] ARGV[2] tag and HSET KEYS[1] tag
--             [message, exchange, routing_key] were done, exactly as Kombu
--             writes them (the message bytes untouched, the two strings
--             escaped as Python's json.dumps does).
--   status 2  the message is not a JSON object with a non-empty string
--             properties.delivery_tag: it was LPUSHed, raw, to KEYS[3].
--             The call stops after it (it is always the last triple).
-- exchange and routing_key come from properties.delivery_info; when that is
-- missing or not two strings, "" and the queue name are recorded, which
-- routes a restore back to the queue it was taken from.
--
-- Receipt (ARGV[1] "1" only): the caller sends the same KEYS[4] again when
-- it retries after losing the reply (connection reset, server restart);
-- so may a client library that resends a command by itself, which is why
-- every call looks for its receipt.
-- A call that recorded takes leaves KEYS[4] = cjson [[queue, length,
-- tag], ...] for 10 s. A call that finds its receipt returns the messages
-- it lists whose unacked records are still there (a record of the length
-- noted; tags are uuid4, so a record under the same tag holds the same
-- message: no digest is needed), cut from the records, instead of taking others,
-- so a lost reply neither strands messages in unacked nor takes more. If
-- none of the records is left unchanged, the call takes anew. The caller
-- names receipts it no longer needs in KEYS[5 ..], so they rarely live
-- their 10 s.

-- pystr quotes s as Python's json.dumps (ensure_ascii) does. Names that
-- are printable ASCII without quote or backslash (nearly all) are quoted
-- as they are; the escaping functions are made only for the others, so a
-- call that needs none does not pay for making them.
local pystr_slow

local function make_pystr_slow()
  local function hex4(n)
    return string.format('\\u%04x', n)
  end

  -- utf8_at decodes the character at byte i of s as Go's utf8.DecodeRune
  -- does: returns code point and size, or 0xFFFD and 1 for an invalid byte.
  local function utf8_at(s, i)
    local c0 = string.byte(s, i)
    local n = #s
    local function cont(j, lo, hi)
      if j > n then return nil end
      local c = string.byte(s, j)
      if c < lo or c > hi then return nil end
      return c - 0x80
    end
    if c0 >= 0xC2 and c0 <= 0xDF then
      local c1 = cont(i + 1, 0x80, 0xBF)
      if c1 then return (c0 - 0xC0) * 64 + c1, 2 end
    elseif c0 >= 0xE0 and c0 <= 0xEF then
      local lo, hi = 0x80, 0xBF
      if c0 == 0xE0 then lo = 0xA0 elseif c0 == 0xED then hi = 0x9F end
      local c1 = cont(i + 1, lo, hi)
      local c2 = c1 and cont(i + 2, 0x80, 0xBF)
      if c2 then return (c0 - 0xE0) * 4096 + c1 * 64 + c2, 3 end
    elseif c0 >= 0xF0 and c0 <= 0xF4 then
      local lo, hi = 0x80, 0xBF
      if c0 == 0xF0 then lo = 0x90 elseif c0 == 0xF4 then hi = 0x8F end
      local c1 = cont(i + 1, lo, hi)
      local c2 = c1 and cont(i + 2, 0x80, 0xBF)
      local c3 = c2 and cont(i + 3, 0x80, 0xBF)
      if c3 then return (c0 - 0xF0) * 262144 + c1 * 4096 + c2 * 64 + c3, 4 end
    end
    return 0xFFFD, 1
  end

  local short_escapes = {
    [34] = '\\"', [92] = '\\\\', [10] = '\\n', [13] = '\\r',
    [9] = '\\t', [8] = '\\b', [12] = '\\f',
  }

  pystr_slow = function(s)
    -- Printable ASCII without quote or backslash is written as it is.
    if not string.find(s, '[%c"\\\128-\255]') then
      return '"' .. s .. '"'
    end
    local out = { '"' }
    local i, n, start = 1, #s, 1
    while i <= n do
      local c = string.byte(s, i)
      if c >= 0x20 and c < 0x7F and c ~= 34 and c ~= 92 then
        i = i + 1
      else
        if start < i then out[#out + 1] = string.sub(s, start, i - 1) end
        if c < 0x80 then
          out[#out + 1] = short_escapes[c] or hex4(c)
          i = i + 1
        else
          local cp, size = utf8_at(s, i)
          if cp >= 0x10000 then
            cp = cp - 0x10000
            out[#out + 1] = hex4(0xD800 + math.floor(cp / 1024))
            out[#out + 1] = hex4(0xDC00 + cp % 1024)
          else
            out[#out + 1] = hex4(cp)
          end
          i = i + size
        end
        start = i
      end
    end
    if start <= n then out[#out + 1] = string.sub(s, start) end
    out[#out + 1] = '"'
    return table.concat(out)
  end
end

local function pystr(s)
  if not string.find(s, '[%c"\\\128-\255]') then
    return '"' .. s .. '"'
  end
  if pystr_slow == nil then
    make_pystr_slow()
  end
  return pystr_slow(s)
end

local record = ARGV[1] ~= '0'
local max = tonumber(ARGV[3])
local rotate = ARGV[4] ~= '0'
local drop = ARGV[4] == '2'
local nq = tonumber(ARGV[5])
local nall = nq   -- the lists are numbered (s - 1) * nall + q
local nsteps = tonumber(ARGV[6])
local nsettle = tonumber(ARGV[7])
local prefix = ARGV[8]
local qbase = 8 + nsteps    -- ARGV[qbase + q] is queue q
local tbase = qbase + nq    -- ARGV[tbase + i] is tag i to settle

if #KEYS > 4 then
  redis.call('DEL', unpack(KEYS, 5))
end
-- unpack is bounded by Lua's C stack: settle in chunks.
for from = tbase + 1, tbase + nsettle, 1000 do
  local to = math.min(from + 999, tbase + nsettle)
  redis.call('ZREM', KEYS[2], unpack(ARGV, from, to))
  redis.call('HDEL', KEYS[1], unpack(ARGV, from, to))
end

if ARGV[1] == '1' then
  local receipt = redis.call('GET', KEYS[4])
  if receipt then
    local ok, r = pcall(cjson.decode, receipt)
    if ok and type(r) == 'table' then
      local out = {}
      for _, e in ipairs(r) do
        if type(e) == 'table' and type(e[3]) == 'string' and type(e[2]) == 'number' then
          local rec = redis.call('HGET', KEYS[1], e[3])
          if rec and #rec > e[2] + 2 and string.byte(rec, e[2] + 2) == 44 then
            out[#out + 1] = 1
            out[#out + 1] = e[1]
            out[#out + 1] = string.sub(rec, 2, e[2] + 1)
          end
        end
      end
      if #out > 0 then
        return out
      end
    end
  end
end

local order = {}
for q = 1, nq do
  order[q] = q
end
local empty = {}   -- lists found empty in this call stay empty until it ends
local out, taken = {}, {}
local zargs, hargs = {}, {}   -- ZADD score tag ..., HSET tag record ...
local now = tonumber(ARGV[2])
while #out < 3 * max do
  local msg, queue, pos
  for s = 1, nsteps do
    for k = 1, nq do
      local list = (s - 1) * nall + order[k]
      if not empty[list] then
        msg = redis.call('RPOP', prefix .. ARGV[qbase + order[k]] .. ARGV[8 + s])
        if msg then
          queue, pos = ARGV[qbase + order[k]], k
          break
        end
        empty[list] = true
      end
    end
    if msg then break end
  end
  if not msg then break end
  if drop then
    table.remove(order, pos)
    nq = nq - 1
  elseif rotate and pos < nq then
    local q = table.remove(order, pos)
    order[nq] = q
  end
  local ok, env = pcall(cjson.decode, msg)
  local tag, props
  if ok and type(env) == 'table' then
    props = env['properties']
    if type(props) == 'table' then
      tag = props['delivery_tag']
    end
  end
  if type(tag) ~= 'string' or tag == '' then
    redis.call('LPUSH', KEYS[3], msg)
    out[#out + 1] = 2
    out[#out + 1] = queue
    out[#out + 1] = msg
    break
  end
  if record then
    local exchange, rk = '', queue
    local di = props['delivery_info']
    if type(di) == 'table' and type(di['exchange']) == 'string'
        and type(di['routing_key']) == 'string' then
      exchange, rk = di['exchange'], di['routing_key']
    end
    -- Messages taken by one call share a receive time; a microsecond per
    -- message keeps their delivery order in the index, so restores (Go's
    -- and Python's, newest first) put them back in order.
    local score = ARGV[2]
    if #taken > 0 then
      score = string.format('%.17g', now + #taken * 1e-6)
    end
    zargs[#zargs + 1] = score
    zargs[#zargs + 1] = tag
    hargs[#hargs + 1] = tag
    hargs[#hargs + 1] = '[' .. msg .. ', ' .. pystr(exchange) .. ', ' .. pystr(rk) .. ']'
    taken[#taken + 1] = { queue, #msg, tag }
  end
  out[#out + 1] = 1
  out[#out + 1] = queue
  out[#out + 1] = msg
end
-- The records, written with one ZADD and one HSET per 500 messages (one
-- command for many is much cheaper than one each; unpack is bounded by
-- Lua's C stack).
for from = 1, #zargs, 1000 do
  local to = math.min(from + 999, #zargs)
  redis.call('ZADD', KEYS[2], unpack(zargs, from, to))
  redis.call('HSET', KEYS[1], unpack(hargs, from, to))
end
if #taken > 0 then
  redis.call('SET', KEYS[4], cjson.encode(taken), 'PX', 10000)
end
if #out == 0 then
  return nil
end
return out
