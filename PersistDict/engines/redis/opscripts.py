"""The Lua scripts of the Redis engine's later features (scripts.py has the core writes): the
prefix lookup, store-wide settings, and the operations' reads and loads (backup, export, import).

Read scripts (PREFIXED, ENTRIES_AFTER) take the tables they read as KEYS (the namespace's, or a
transaction()'s copies); write scripts start with scripts.PROLOGUE, like every write.
"""

from __future__ import annotations

from .scripts import PROLOGUE

# the live entries whose lookup is in [ARGV[1], ARGV[2]] (ZRANGE BYLEX bounds) on the sorted index
# K (KEYS[2]), live at ARGV[3]: the clock, how many records were read, then each one's exact key
# (its lookup when it has none), in lookup order. Reads only the records the index names.
PREFIXED = """
local E, K, now = KEYS[1], KEYS[2], tonumber(ARGV[3])
local lookups = redis.call('ZRANGE', K, ARGV[1], ARGV[2], 'BYLEX')
local out = {redis.call('HGET', E, '') or '0', #lookups}
for _, lookup in ipairs(lookups) do
  local rec = redis.call('HGET', E, lookup)
  if rec then
    local _, _, _, expires, _, xlen = struct.unpack('<ddddBI4', rec)
    if expires == 0 or expires > now then
      if xlen > 0 then out[#out + 1] = string.sub(rec, 38, 37 + xlen) else out[#out + 1] = lookup end
    end
  end
end
return out
"""

# up to ARGV[2] live entries (at ARGV[3]) with ids after ARGV[1], in id order: lookup, record and
# stored access time ('' none) of each. KEYS: E, O, A. Expired entries are stepped over, so a
# short answer means there are no more.
ENTRIES_AFTER = """
local E, O, A = KEYS[1], KEYS[2], KEYS[3]
local limit, now = tonumber(ARGV[2]), tonumber(ARGV[3])
local out, found, start = {}, 0, '(' .. ARGV[1]
while found < limit do
  local rows = redis.call('ZRANGE', O, start, '+inf', 'BYSCORE', 'LIMIT', 0, limit, 'WITHSCORES')
  if #rows == 0 then break end
  for i = 1, #rows, 2 do
    local rec = redis.call('HGET', E, rows[i])
    if rec and found < limit then
      local _, _, _, expires = struct.unpack('<ddddBI4', rec)
      if expires == 0 or expires > now then
        found = found + 1
        out[#out + 1] = rows[i]; out[#out + 1] = rec; out[#out + 1] = redis.call('ZSCORE', A, rows[i]) or ''
      end
    end
    start = '(' .. rows[i + 1]
  end
end
return out
"""

# ARGV 5..: the setting's name, its new value, the value expected, whether one is expected: '1' if
# stored. On the meta hash M (kept by clear(), copied by transaction()): under 's:' + name, which
# no other meta row (next, bytes, format, called) starts with.
PUT_SETTING = PROLOGUE + """
local field, value, expected, has_expected = 's:' .. ARGV[5], ARGV[6], ARGV[7], ARGV[8] == '1'
local current = redis.call('HGET', M, field)
if has_expected then
  if current ~= expected then return finish(nil, '0') end
elseif current then return finish(nil, '0') end
redis.call('HSET', M, field, value)
return finish(nil, '1')
"""

# import_from: ARGV 5..: now, max_items, max_bytes, pending accesses, the number of entries, the
# entries (lookup, exact, kind, payload, ctime, mtime, atime, expires). A key not present (or
# expired) becomes a new entry, last in order; a present one keeps its id, place and first exact
# key and takes the value and times given. Then eviction, as put's.
LOAD = PROLOGUE + """
local now, maxi, maxb = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local at = note_accesses(8)
local items = {}
for i = 0, tonumber(ARGV[at]) - 1 do
  local base = at + 1 + 8 * i
  items[#items + 1] = {ARGV[base], ARGV[base + 1], tonumber(ARGV[base + 2]), ARGV[base + 3],
                       tonumber(ARGV[base + 4]), tonumber(ARGV[base + 5]), tonumber(ARGV[base + 6]),
                       tonumber(ARGV[base + 7])}
end
local n, b = needs(items, now)
if not fits(maxi, maxb, n, b) then return {'BOUNDS', n, b} end
local protected = {}
for _, item in ipairs(items) do
  local lookup, exact, kind, payload, ctime, mtime, atime, expires = unpack(item)
  local old = redis.call('HGET', E, lookup)
  if old and not live(old, now) then remove(lookup, old); old = false end
  local seq
  if old then
    local oseq, _, _, _, _, xlen = header(old)
    seq, exact = oseq, string.sub(old, 38, 37 + xlen)
    bytes = bytes - size(lookup, old)
  else
    seq = redis.call('HINCRBY', M, 'next', 1)
    redis.call('ZADD', O, seq, lookup); redis.call('ZADD', K, 0, lookup)
  end
  local rec = struct.pack(HDR, seq, ctime, mtime, expires, kind, #exact) .. exact .. payload
  redis.call('HSET', E, lookup, rec)
  redis.call('ZADD', A, math.max(atime, mtime), lookup)
  if expires ~= 0 then redis.call('ZADD', X, expires, lookup) else redis.call('ZREM', X, lookup) end
  bytes = bytes + size(lookup, rec); note(lookup); protected[lookup] = true
end
return finish(evict(maxi, maxb, protected))
"""
