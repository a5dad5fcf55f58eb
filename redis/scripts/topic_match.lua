-- topic_match.lua: a library chunk, not a script of its own. It is put in
-- front of publish.lua and publish_batch.lua (and of a test driver) and
-- defines
--
--   topic_match(pattern, key, cache) -> true | false | nil
--
-- which answers Python's re.match(pattern, key) for the regex subset Kombu's
-- TopicExchange.key_to_pattern writes: "^" at the start, "$" at the end
-- (which, as in Python, also matches before one final "\n"), literal
-- characters, a backslash before an ASCII character that is not a letter or
-- digit (that character), "\0" with up to two more octal digits (NUL and
-- friends), ".", "[^\.]", and a "*" or "*?" after any of these. An empty
-- pattern matches everything. nil means the pattern uses anything else (or
-- is not valid UTF-8): the caller must then route in Go
-- (transport.MatchTopic), which also reports Python's compile errors.
--
-- The fast path: when the pattern is ASCII without NUL or "\0" escapes and
-- the key is ASCII without NUL or "\n" (nearly always), the pattern is
-- rewritten as a Lua pattern by topic_lua_pattern, scanning it with
-- string.find and string.byte (no table of characters, no table per atom),
-- and string.find answers the match (for a match of the whole remaining
-- key, greedy and lazy repetition find the same matches). Anything else goes
-- to the general matcher below, which works on characters, not bytes: the
-- key is split into its characters, each invalid UTF-8 byte standing for
-- U+FFFD as in Go's regexp. Its functions are made on the first call that
-- needs them, so a script that routes no such pattern does not pay for them.
--
-- cache is nil or an empty table the caller keeps for one script call:
-- topic_match stores rewritten patterns, compiled patterns and split keys
-- in it.

-- topic_kombu_pattern rewrites, with a few string.gsub calls, a pattern of
-- the shape Kombu writes for a key of letters, digits, "." and escaped
-- punctuation: "^" and "$" around literal letters and digits, "\" before
-- punctuation, and ".*?" (alone or before "[^\.]"). It returns false for
-- anything else (topic_lua_pattern then decides). Why it is exact: with
-- no "%" in the pattern, every "%" after the first gsub starts one of its
-- escapes, found left to right as Python's parser finds them, and a
-- backslash it did not consume is left over; in the check string u,
-- "[^%.]" becomes N, each escape E and each ".*?" S, so a pattern is taken
-- only when nothing but letters and digits remains (no bare "*", "?",
-- ".", backslash, NUL or non-ASCII byte), and its only "*?" are those of
-- ".*?", which become "*".
local function topic_kombu_pattern(pattern)
  local gsub = string.gsub
  if string.byte(pattern, 1) ~= 94 or string.byte(pattern, -1) ~= 36 or string.find(pattern, '%', 1, true) then
    return false
  end
  local t = gsub(string.sub(pattern, 2, -2), '\\(%p)', '%%%1')
  local u = gsub(gsub(gsub(t, '%[%^%%%.%]', 'N'), '%%%p', 'E'), '%.%*%?', 'S')
  if string.find(u, '%W') then return false end
  return '^' .. gsub(t, '%*%?', '*') .. '$'
end

-- topic_lua_pattern rewrites pattern (a regex of the subset above) as a
-- Lua pattern, or returns false when the pattern is not ASCII, holds a NUL
-- or a "\0" escape, or is outside the subset (the general matcher then
-- decides, and declines what is outside the subset).
local function topic_lua_pattern(pattern)
  local find, byte = string.find, string.byte
  if find(pattern, '[%z\128-\255]') then return false end
  local n, i = #pattern, 1
  if byte(pattern, 1) == 94 then i = 2 end -- "^"
  local out, k, tail = {}, 1, ''
  out[1] = '^'
  while i <= n do
    local c = byte(pattern, i)
    local piece, j
    local s, e = find(pattern, '^%w+', i)
    if s then
      piece, j = string.sub(pattern, s, e), e + 1
    elseif c == 92 then -- "\" and a character that is not a letter or digit
      local d = byte(pattern, i + 1)
      if d == nil or find(pattern, '^%w', i + 1) then return false end
      piece, j = '%' .. string.char(d), i + 2
    elseif c == 46 then -- "."
      piece, j = '.', i + 1
    elseif c == 91 then -- "[": only "[^\.]"
      if string.sub(pattern, i, i + 4) ~= '[^\\.]' then return false end
      piece, j = '[^%.]', i + 5
    elseif c == 36 then -- "$": only at the end
      if i ~= n then return false end
      tail = '$'
      break
    elseif find(pattern, '^[%*%+%?%(%){}|%]%^]', i) then
      return false
    else
      piece, j = '%' .. string.char(c), i + 1
    end
    c = byte(pattern, j)
    if c == 42 then -- "*" or "*?"
      piece = piece .. '*'
      j = j + 1
      if byte(pattern, j) == 63 then j = j + 1 end
      c = byte(pattern, j)
    end
    if c == 42 or c == 43 or c == 63 or c == 123 then return false end -- "*+?{"
    k = k + 1
    out[k] = piece
    i = j
  end
  out[k + 1] = tail
  return table.concat(out)
end

local make_topic_match
local topic_match_impl

local function topic_match(pattern, key, cache)
  if pattern == '' then return true end
  local lua
  if cache then
    local lp = cache.lp
    if lp == nil then
      lp = {}
      cache.lp = lp
    end
    lua = lp[pattern]
    if lua == nil then
      lua = topic_kombu_pattern(pattern) or topic_lua_pattern(pattern)
      lp[pattern] = lua
    end
  else
    lua = topic_kombu_pattern(pattern) or topic_lua_pattern(pattern)
  end
  if lua and not string.find(key, '[%z\n\128-\255]') then
    return string.find(key, lua) ~= nil
  end
  if topic_match_impl == nil then
    topic_match_impl = make_topic_match()
  end
  return topic_match_impl(pattern, key, cache or {})
end

make_topic_match = function()

-- utf8_chars splits s into its characters (valid UTF-8 sequences as Go's
-- utf8.DecodeRune accepts them). An invalid byte becomes invalid_as (or
-- makes the function return nil when invalid_as is nil).
local function utf8_chars(s, invalid_as)
  local out, i, n = {}, 1, #s
  while i <= n do
    local c0 = string.byte(s, i)
    local size = 0
    if c0 < 0x80 then
      size = 1
    else
      local need, lo, hi = 0, 0x80, 0xBF
      if c0 >= 0xC2 and c0 <= 0xDF then need = 1
      elseif c0 >= 0xE0 and c0 <= 0xEF then
        need = 2
        if c0 == 0xE0 then lo = 0xA0 elseif c0 == 0xED then hi = 0x9F end
      elseif c0 >= 0xF0 and c0 <= 0xF4 then
        need = 3
        if c0 == 0xF0 then lo = 0x90 elseif c0 == 0xF4 then hi = 0x8F end
      end
      if need > 0 and i + need <= n then
        local ok = true
        for j = 1, need do
          local c = string.byte(s, i + j)
          local l, h = 0x80, 0xBF
          if j == 1 then l, h = lo, hi end
          if c < l or c > h then ok = false break end
        end
        if ok then size = need + 1 end
      end
    end
    if size == 0 then
      if invalid_as == nil then return nil end
      out[#out + 1] = invalid_as
      i = i + 1
    else
      out[#out + 1] = string.sub(s, i, i + size - 1)
      i = i + size
    end
  end
  return out
end

local unsupported = {
  ['*'] = true, ['+'] = true, ['?'] = true, ['('] = true, [')'] = true,
  ['{'] = true, ['}'] = true, ['|'] = true, [']'] = true, ['['] = true,
  ['^'] = true, ['$'] = true,
}

local function is_octal(c)
  return c ~= nil and #c == 1 and c >= '0' and c <= '7'
end

-- compile turns pattern text into {atoms = {...}, anchored = bool}, or
-- returns nil when it is outside the subset. An atom is
-- {k = 'lit'|'any'|'notdot', c = char, star = bool}.
local function topic_compile(pattern)
  local p = utf8_chars(pattern, nil)
  if p == nil then return nil end
  local atoms, anchored = {}, false
  local i, n = 1, #p
  if p[1] == '^' then i = 2 end
  while i <= n do
    local c = p[i]
    local atom
    if c == '$' then
      if i ~= n then return nil end
      anchored = true
      break
    elseif c == '\\' then
      local d = p[i + 1]
      if d == nil or #d ~= 1 then return nil end
      if d == '0' then
        local code, j = 0, i + 2
        while j <= i + 3 and is_octal(p[j]) do
          code = code * 8 + (string.byte(p[j]) - 48)
          j = j + 1
        end
        atom = { k = 'lit', c = string.char(code) }
        i = j
      elseif string.find(d, '^[%w]$') then
        return nil
      else
        atom = { k = 'lit', c = d }
        i = i + 2
      end
    elseif c == '.' then
      atom = { k = 'any' }
      i = i + 1
    elseif c == '[' then
      if p[i + 1] == '^' and p[i + 2] == '\\' and p[i + 3] == '.' and p[i + 4] == ']' then
        atom = { k = 'notdot' }
        i = i + 5
      else
        return nil
      end
    elseif unsupported[c] then
      return nil
    else
      atom = { k = 'lit', c = c }
      i = i + 1
    end
    if p[i] == '*' then
      atom.star = true
      i = i + 1
      if p[i] == '?' then i = i + 1 end
    end
    local q = p[i]
    if q == '*' or q == '+' or q == '?' or q == '{' then return nil end
    atoms[#atoms + 1] = atom
  end
  return { atoms = atoms, anchored = anchored }
end

local function atom_ok(a, ch)
  if a.k == 'lit' then return ch == a.c end
  if a.k == 'any' then return ch ~= '\n' end
  return ch ~= '.'
end

-- lua_pattern writes a compiled pattern as a Lua pattern, or returns
-- false when a literal is not ASCII (or is NUL).
local function lua_pattern(re)
  local out = { '^' }
  for _, a in ipairs(re.atoms) do
    local piece
    if a.k == 'any' then
      piece = '.'
    elseif a.k == 'notdot' then
      piece = '[^%.]'
    else
      local c = a.c
      if #c ~= 1 or c == '\0' then return false end
      if string.find(c, '^[%w]$') then
        piece = c
      else
        piece = '%' .. c
      end
    end
    if a.star then piece = piece .. '*' end
    out[#out + 1] = piece
  end
  if re.anchored then out[#out + 1] = '$' end
  return table.concat(out)
end

return function(pattern, key, cache)
  if pattern == '' then return true end
  if cache[1] == nil then
    cache[1], cache[2], cache[3] = {}, {}, {} -- compiled patterns, simple keys, split keys
  end
  local res, simples, splits = cache[1], cache[2], cache[3]
  local re = res[pattern]
  if re == nil then
    re = topic_compile(pattern) or false
    if re then re.lua = lua_pattern(re) end
    res[pattern] = re
  end
  if re == false then return nil end
  local simple = simples[key]
  if simple == nil then
    simple = not string.find(key, '[%z\n\128-\255]')
    simples[key] = simple
  end
  if simple and re.lua then
    return string.find(key, re.lua) ~= nil
  end
  local chars = splits[key]
  if chars == nil then
    chars = utf8_chars(key, '\239\191\189')
    splits[key] = chars
  end
  local atoms, n = re.atoms, #chars
  -- nxt[j]: atoms i+1.. match chars j..; built from the last atom back.
  local nxt = {}
  for j = 1, n + 1 do
    if re.anchored then
      nxt[j] = (j == n + 1) or (j == n and chars[n] == '\n')
    else
      nxt[j] = true
    end
  end
  for i = #atoms, 1, -1 do
    local a = atoms[i]
    local cur = {}
    if a.star then
      cur[n + 1] = nxt[n + 1]
      for j = n, 1, -1 do
        cur[j] = nxt[j] or (atom_ok(a, chars[j]) and cur[j + 1])
      end
    else
      cur[n + 1] = false
      for j = n, 1, -1 do
        cur[j] = atom_ok(a, chars[j]) and nxt[j + 1]
      end
    end
    nxt = cur
  end
  return nxt[1] and true or false
end

end
