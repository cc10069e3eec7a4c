"""The Redis engine's writes as Lua scripts: each runs atomically on the server (every multi-key
write is one script), so no other client sees half of it.

A namespace's keys (all under one hash tag, so a Cluster keeps them in one slot):

- ``E`` hash: lookup -> record (``HEADER``: id, ctime, mtime, expires, kind, exact's length;
  then exact, then the payload); the field ``""`` is the commit clock, so that one ``HMGET``
  reads an entry and the clock it is current at.
- ``O`` sorted set: lookup by id (insertion order); ``A``: lookup by last access (max of mtime and
  the stored access time: eviction and the idle sweep); ``X``: lookup by expiry (entries with a TTL).
- ``M`` hash: ``next`` (the last id given), ``bytes`` (the records' bytes, for ``max_bytes``),
  ``format``, ``called``, and the settings (``s:<name>``, opscripts.py).
- ``K`` sorted set: every lookup at score 0, so ordered by bytes: prefix lookups (``BYLEX``).
- ``LOG`` stream: one entry per commit, id ``<clock>-1``, the lookups it changed (capped).
- ``TXN``: the token of the ``transaction()`` holding the namespace (writers wait for it).

Every write script starts with ``PROLOGUE`` (keys and arguments: ``E O A X M K LOG-or-CHANGED TXN``,
then ``token, tracked, channel, keep``) and ends with ``finish``: a write that changed something
bumps the clock, logs what it changed and publishes the new clock on the namespace's channel;
inside ``transaction()`` (``tracked`` = 0) it works on the block's copies and adds what it changed
to the block's set instead (the commit logs them). A script refuses (``BOUNDS``, ``CALLED``...)
before it writes anything: a Lua error does not undo what a script already did.
"""

from __future__ import annotations

import struct

from ..._codec.record import HEADER_SIZE

HEADER = struct.Struct("<ddddBI")  # id, ctime, mtime, expires, kind, len(exact); Lua: '<ddddBI4'
RECORD_OVERHEAD = HEADER_SIZE + 4  # record_length(): the LMDB record's header and checksum

PROLOGUE = """
local E, O, A, X, M, K, LOG, TXN = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local token, tracked, channel, keep = ARGV[1], ARGV[2] == '1', ARGV[3], tonumber(ARGV[4])
local holder = redis.call('GET', TXN)
if holder and holder ~= token then return {'BUSY'} end
if token ~= '' then redis.call('PEXPIRE', TXN, 60000) end
local HDR = '<ddddBI4'
local OVERHEAD = """ + str(RECORD_OVERHEAD) + """
local bytes = tonumber(redis.call('HGET', M, 'bytes') or '0')
local changed, nchanged, everything, wrote = {}, 0, false, false

local function note(lookup)
  wrote = true
  if not changed[lookup] then changed[lookup] = true; nchanged = nchanged + 1 end
end
local function size(lookup, rec) return OVERHEAD + #lookup + #rec - 37 end
local function header(rec) return struct.unpack(HDR, rec) end
local function live(rec, now)
  local _, _, _, expires = header(rec)
  return expires == 0 or expires > now
end
local function written_after(mtime, now)  -- engines/base.py's written_after
  if now > mtime then return now end
  local _, e = math.frexp(mtime)
  return mtime + 2 ^ (e - 53)
end
local function remove(lookup, rec)
  redis.call('HDEL', E, lookup); redis.call('ZREM', O, lookup)
  redis.call('ZREM', A, lookup); redis.call('ZREM', X, lookup); redis.call('ZREM', K, lookup)
  bytes = bytes - size(lookup, rec); note(lookup)
end
local function count() return redis.call('HLEN', E) - 1 end
-- keep_key false: an overwrite takes the item's exact key (an encrypted store's key rotation)
local function store(lookup, exact, kind, payload, now, expires, keep_key)
  local old = redis.call('HGET', E, lookup)
  local seq, ctime, mtime = nil, now, now
  if old then
    local oseq, octime, omtime, oexpires, _, xlen = header(old)
    if oexpires ~= 0 and oexpires <= now then
      remove(lookup, old)
    else  -- an overwrite keeps the id, ctime, position and first exact key (like a dict)
      seq, ctime, mtime = oseq, octime, written_after(omtime, now)
      if keep_key ~= false or exact == '' then exact = string.sub(old, 38, 37 + xlen) end
      bytes = bytes - size(lookup, old)
    end
  end
  if not seq then
    seq = redis.call('HINCRBY', M, 'next', 1)
    redis.call('ZADD', O, seq, lookup)
    redis.call('ZADD', K, 0, lookup)  -- the lookups in byte order, for prefix lookups (BYLEX)
  end
  local rec = struct.pack(HDR, seq, ctime, mtime, expires, kind, #exact) .. exact .. payload
  redis.call('HSET', E, lookup, rec)
  redis.call('ZADD', A, 'GT', mtime, lookup)
  if expires ~= 0 then redis.call('ZADD', X, expires, lookup) else redis.call('ZREM', X, lookup) end
  bytes = bytes + size(lookup, rec); note(lookup)
  return seq
end
-- what the entries of a write take once written (an overwrite of a live entry keeps its exact key)
local function needs(entries, now, keep_key)
  local n, b, seen = 0, 0, {}
  for _, item in ipairs(entries) do
    local lookup, exact, payload = item[1], item[2], item[4]
    if not seen[lookup] then n = n + 1 end
    local old = redis.call('HGET', E, lookup)
    if old and live(old, now) and (keep_key ~= false or exact == '') then
      local _, _, _, _, _, xlen = header(old); exact = string.sub(old, 38, 37 + xlen)
    end
    if seen[lookup] then b = b - seen[lookup] end
    seen[lookup] = OVERHEAD + #lookup + #exact + #payload
    b = b + seen[lookup]
  end
  return n, b
end
local function fits(maxi, maxb, n, b)
  return not ((maxi >= 0 and n > maxi) or (maxb >= 0 and b > maxb))
end
-- remove the least recently used entries but ``protected`` ones until the bounds hold
local function evict(maxi, maxb, protected)
  local evicted, index = {}, 0
  while not fits(maxi, maxb, count(), bytes) do
    local found = redis.call('ZRANGE', A, index, index)
    if #found == 0 then break end
    local victim = found[1]
    if protected[victim] then index = index + 1 else
      remove(victim, redis.call('HGET', E, victim)); evicted[#evicted + 1] = victim
    end
  end
  return evicted
end
-- access times this process noted, stored before an eviction picks its victims
local function note_accesses(pairs_at)
  local n = tonumber(ARGV[pairs_at])
  for i = 1, n do
    local seq, when = ARGV[pairs_at + 2 * i - 1], tonumber(ARGV[pairs_at + 2 * i])
    local found = redis.call('ZRANGE', O, seq, seq, 'BYSCORE', 'LIMIT', 0, 1)
    if #found == 1 then redis.call('ZADD', A, 'GT', when, found[1]) end
  end
  return pairs_at + 2 * n + 1
end
local function finish(evicted, extra)
  redis.call('HSET', M, 'bytes', bytes)
  local clock = tonumber(redis.call('HGET', E, ''))
  if wrote then
    if tracked then
      clock = redis.call('HINCRBY', E, '', 1)
      local parts = {}
      if not everything then
        for lookup in pairs(changed) do parts[#parts + 1] = struct.pack('<I4', #lookup) .. lookup end
      end
      redis.call('XADD', LOG, 'MAXLEN', keep, clock .. '-1', everything and 'all' or 'k', table.concat(parts))
      redis.call('PUBLISH', channel, clock)
    else
      clock = clock + 1
      if everything then redis.call('SADD', LOG, '') end
      for lookup in pairs(changed) do redis.call('SADD', LOG, lookup) end
      redis.call('PEXPIRE', LOG, 3600000)  -- a block whose process died leaves nothing for long
    end
  end
  return {'OK', clock, wrote and 1 or 0, evicted or {}, extra or ''}
end
local function items_at(at, count_)
  local items = {}
  for i = 0, count_ - 1 do
    local base = at + 4 * i
    items[#items + 1] = {ARGV[base], ARGV[base + 1], tonumber(ARGV[base + 2]), ARGV[base + 3]}
  end
  return items
end
"""

# ARGV 5..: now, expires, max_items, max_bytes (-1: none), once ('' none), pending accesses
# (n, then id/time pairs), the number of items, the items (lookup, exact, kind, payload)
PUT = PROLOGUE + """
local now, expires = tonumber(ARGV[5]), tonumber(ARGV[6])
local maxi, maxb, once = tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9]
local at = note_accesses(10)
local items = items_at(at + 1, tonumber(ARGV[at]))
local n, b = needs(items, now)
if not fits(maxi, maxb, n, b) then return {'BOUNDS', n, b} end
if once ~= '' then
  if redis.call('HEXISTS', M, once) == 1 then return {'CALLED'} end
  redis.call('HSET', M, once, '1'); wrote = true
end
local protected = {}
for _, item in ipairs(items) do
  store(item[1], item[2], item[3], item[4], now, expires); protected[item[1]] = true
end
return finish(evict(maxi, maxb, protected))
"""

# ARGV 5..: now, max_items, max_bytes, refuse (1: refuse to store), pending accesses, the item
PUT_IF_ABSENT = PROLOGUE + """
local now, maxi, maxb, refuse = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8] == '1'
local at = note_accesses(9)
local item = items_at(at, 1)[1]
local old = redis.call('HGET', E, item[1])
if old and live(old, now) then return finish(nil, old) end
if refuse then return {'REFUSED'} end
local n, b = needs({item}, now)
if not fits(maxi, maxb, n, b) then return {'BOUNDS', n, b} end
store(item[1], item[2], item[3], item[4], now, 0)
return finish(evict(maxi, maxb, {[item[1]] = true}))
"""

# ARGV 5..: now, expires, max_items, max_bytes, expected record ('' with has_expected 0: only if
# absent or expired), has_expected, keep_key (0: take the item's exact key), pending accesses, the item
REPLACE = PROLOGUE + """
local now, expires, maxi, maxb = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local expected, has_expected, keep_key = ARGV[9], ARGV[10] == '1', ARGV[11] == '1'
local at = note_accesses(12)
local item = items_at(at, 1)[1]
local old = redis.call('HGET', E, item[1])
if old and not live(old, now) then old = false end
if has_expected then
  if old ~= expected then return finish(nil, '0') end
elseif old then return finish(nil, '0') end
local n, b = needs({item}, now, keep_key)
if not fits(maxi, maxb, n, b) then return {'BOUNDS', n, b} end
store(item[1], item[2], item[3], item[4], now, expires, keep_key)
return finish(evict(maxi, maxb, {[item[1]] = true}), '1')
"""

# ARGV 5..: lookup, expected record, has_expected: the record removed, if any
REMOVE = PROLOGUE + """
local lookup, expected, has_expected = ARGV[5], ARGV[6], ARGV[7] == '1'
local old = redis.call('HGET', E, lookup)
if old and (not has_expected or old == expected) then
  remove(lookup, old)
  return finish(nil, old)
end
return finish(nil, '')
"""

# ARGV 5..: id, expected record: the lookup removed, if any
REMOVE_AT = PROLOGUE + """
local found = redis.call('ZRANGE', O, ARGV[5], ARGV[5], 'BYSCORE', 'LIMIT', 0, 1)
if #found == 1 then
  local old = redis.call('HGET', E, found[1])
  if old and old == ARGV[6] then remove(found[1], old); return finish(nil, found[1]) end
end
return finish(nil, '')
"""

# ARGV 5..: now, expires, lookup: '1' if the live entry was found
RETIME = PROLOGUE + """
local now, expires, lookup = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local old = redis.call('HGET', E, lookup)
if not (old and live(old, now)) then return finish(nil, '0') end
local seq, ctime, mtime, oexpires, kind, xlen = header(old)
if expires ~= oexpires then  -- a new expiry is a write: a new version
  local rec = struct.pack(HDR, seq, ctime, written_after(mtime, now), expires, kind, xlen) .. string.sub(old, 38)
  redis.call('HSET', E, lookup, rec)
  if expires ~= 0 then redis.call('ZADD', X, expires, lookup) else redis.call('ZREM', X, lookup) end
  note(lookup)
end
redis.call('ZADD', A, 'GT', now, lookup)
return finish(nil, '1')
"""

CLEAR = PROLOGUE + """
local clock = redis.call('HGET', E, '')
if redis.call('HLEN', E) > 1 or redis.call('HEXISTS', M, 'called') == 1 then wrote = true end
redis.call('DEL', E, O, A, X, K)
redis.call('HSET', E, '', clock)
redis.call('HDEL', M, 'called')
bytes, everything = 0, true
return finish()
"""

# ARGV 5..: pending accesses: how many entries' access times moved
WRITE_ATIMES = PROLOGUE + """
local n, moved = tonumber(ARGV[5]), 0
for i = 1, n do
  local seq, when = ARGV[5 + 2 * i - 1], tonumber(ARGV[5 + 2 * i])
  local found = redis.call('ZRANGE', O, seq, seq, 'BYSCORE', 'LIMIT', 0, 1)
  if #found == 1 then moved = moved + redis.call('ZADD', A, 'GT', 'CH', when, found[1]) end
end
return finish(nil, tostring(moved))
"""

# ARGV 5..: now, idle cutoff ('' none), at most how many: how many removed, and '1' if more remain
SWEEP = PROLOGUE + """
local now, cutoff, limit = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local victims = redis.call('ZRANGE', X, '-inf', now, 'BYSCORE', 'LIMIT', 0, limit)
if cutoff and #victims < limit then
  for _, lookup in ipairs(redis.call('ZRANGE', A, '-inf', '(' .. ARGV[6], 'BYSCORE', 'LIMIT', 0, limit - #victims)) do
    victims[#victims + 1] = lookup
  end
end
local removed = 0
for _, lookup in ipairs(victims) do
  local old = redis.call('HGET', E, lookup)
  if old then remove(lookup, old); removed = removed + 1 end
end
return finish(nil, removed .. (#victims >= limit and ':1' or ':0'))
"""

# the stored format record; ``wanted`` stored first if there is none and the store is empty
FORMAT = """
local stored = redis.call('HGET', KEYS[2], 'format')
if not stored and redis.call('HLEN', KEYS[1]) <= 1 then redis.call('HSET', KEYS[2], 'format', ARGV[1]) end
return stored
"""

# a named mutex: KEYS[1]; ARGV: holder, now, until, milliseconds (Redis expires it too)
CLAIM = """
local current = redis.call('GET', KEYS[1])
if current then
  local sep = string.find(current, '|', 1, true)
  local holder, untl = string.sub(current, 1, sep - 1), tonumber(string.sub(current, sep + 1))
  if holder ~= ARGV[1] and untl > tonumber(ARGV[2]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[3], 'PX', ARGV[4])
return 1
"""

UNCLAIM = """
local current = redis.call('GET', KEYS[1])
if current and string.sub(current, 1, #ARGV[1] + 1) == ARGV[1] .. '|' then redis.call('DEL', KEYS[1]); return 1 end
return 0
"""

# the maintenance lease: KEYS[1]; ARGV: holder, now, seconds, expiration days ('' none). Taken
# when free, ours, ended, or held with a laxer expiration_days (the strictest setting sweeps)
LEASE = """
local current = redis.call('GET', KEYS[1])
local now, seconds, days = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if current then
  local holder, theirs, untl = string.match(current, '^(.*)#(.*)|(.*)$')
  theirs, untl = tonumber(theirs), tonumber(untl)
  if holder == ARGV[1] and untl - now > seconds / 2 then return 1 end
  local stricter = days and (not theirs or days < theirs)
  if holder ~= ARGV[1] and untl > now and not stricter then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. '#' .. ARGV[4] .. '|' .. string.format('%.17g', now + seconds),
           'PX', math.ceil(seconds * 1000))
return 1
"""

RELEASE_LEASE = """
local current = redis.call('GET', KEYS[1])
if current and string.sub(current, 1, #ARGV[1] + 1) == ARGV[1] .. '#' then redis.call('DEL', KEYS[1]) end
return 0
"""

# transaction(): KEYS: TXN, then the n source tables (E O A X M K), then their n copies. ARGV:
# token, whether to take the namespace. BEGIN takes the namespace (if free) and copies its tables
# for the block; with ARGV[2] 0 it copies a block's tables for a nested one.
BEGIN = """
local holder = redis.call('GET', KEYS[1])
if ARGV[2] == '1' then
  if holder then return 0 end
  redis.call('SET', KEYS[1], ARGV[1], 'PX', 60000)
elseif holder ~= ARGV[1] then return -1 end
local n = (#KEYS - 1) / 2
for i = 2, n + 1 do
  redis.call('DEL', KEYS[i + n])
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('COPY', KEYS[i], KEYS[i + n]); redis.call('PEXPIRE', KEYS[i + n], 3600000)
  end
end
return 1
"""

# a nested block's tables replace its parent's (KEYS: the block's n tables, then the parent's)
RELEASE = """
local n = #KEYS / 2
for i = 1, n do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('RENAME', KEYS[i], KEYS[i + n])
  else redis.call('DEL', KEYS[i + n]) end
end
return 1
"""

# the block's tables replace the namespace's, in one step; KEYS: TXN, the block's n tables (E
# first), the namespace's n tables, LOG, the block's set of changed lookups. ARGV: token, channel, keep.
COMMIT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {-1} end
local n = (#KEYS - 3) / 2
local E, LOG, CHANGED = KEYS[n + 2], KEYS[2 * n + 2], KEYS[2 * n + 3]
for i = 2, n + 1 do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('RENAME', KEYS[i], KEYS[i + n])
  else redis.call('DEL', KEYS[i + n]) end
end
redis.call('DEL', KEYS[1])
local changed = redis.call('SMEMBERS', CHANGED)
redis.call('DEL', CHANGED)
if #changed == 0 then return {tonumber(redis.call('HGET', E, '')), 0} end
local clock = redis.call('HINCRBY', E, '', 1)
local parts, everything = {}, false
for _, lookup in ipairs(changed) do
  if lookup == '' then everything = true end
  parts[#parts + 1] = struct.pack('<I4', #lookup) .. lookup
end
redis.call('XADD', LOG, 'MAXLEN', ARGV[3], clock .. '-1', everything and 'all' or 'k', table.concat(parts))
redis.call('PUBLISH', ARGV[2], clock)
return {clock, 1}
"""

# KEYS: TXN, then the keys to drop; ARGV: token, whether to free TXN
ABORT = """
for i = 2, #KEYS do redis.call('DEL', KEYS[i]) end
if ARGV[2] == '1' and redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""

# the change feed: the clock and the log entries after ``since`` (ARGV[1]), in one snapshot
CHANGES = """
local clock = redis.call('HGET', KEYS[1], '')
return {clock or '0', redis.call('XRANGE', KEYS[2], '(' .. ARGV[1] .. '-1', '+')}
"""
