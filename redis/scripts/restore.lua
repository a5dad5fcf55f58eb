-- restore.lua: the second half of a restore whose WATCH transaction kept
-- failing because other consumers write the shared unacked hash: a
-- compare-and-set on the one record instead of on the whole hash. Go has
-- read the record (HGET), routed it and built the payload; this applies
-- the result only if the record is still what Go read, leaving the state
-- Kombu's MULTI block leaves (ZREM, HDEL, then the pushes).
--
-- KEYS[1]    P+unacked
-- KEYS[2]    P+unacked_index
-- KEYS[3..]  the lists to push the payload to (the malformed list when the
--            record could not be restored)
-- ARGV[1]    the delivery tag
-- ARGV[2]    "1" if the record existed when Go read it, "0" if not
-- ARGV[3]    the record as Go read it (when ARGV[2] is "1")
-- ARGV[4]    "L" to LPUSH (back of the queue), "R" to RPUSH (front)
-- ARGV[5]    the payload
--
-- Returns 1 when applied, 0 when the record changed since Go read it
-- (nothing written; read again and retry).

local cur = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] == '1' then
  if cur ~= ARGV[3] then return 0 end
elseif cur then
  return 0
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[1])
for i = 3, #KEYS do
  if ARGV[4] == 'L' then
    redis.call('LPUSH', KEYS[i], ARGV[5])
  else
    redis.call('RPUSH', KEYS[i], ARGV[5])
  end
end
return 1
