"""The Lua scripts of service/queue.py (each runs atomically in Redis); keys and arguments as
documented above each one."""

# KEYS: idem, job, backlog, stream   ARGV: has_idem, job_id, idem_ttl, frames_total, prefix, field/value...
SUBMIT_LUA = """
if ARGV[1] == '1' then
  local existing = redis.call('GET', KEYS[1])
  if existing and redis.call('EXISTS', ARGV[5] .. ':job:' .. existing) == 1 then
    return {0, existing}
  end
  redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[3]))
end
local fields = {}
for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[2], unpack(fields))
local entry = redis.call('XADD', KEYS[4], '*', 'job_id', ARGV[2])
redis.call('HSET', KEYS[2], 'entry_id', entry, 'backlog', ARGV[4])
redis.call('INCRBY', KEYS[3], tonumber(ARGV[4]))
return {1, ARGV[2]}
"""

# KEYS: job, backlog   ARGV: worker_id, frames_total, video_json, now
START_LUA = """
local st = redis.call('HGET', KEYS[1], 'status')
if st ~= 'queued' and st ~= 'running' then return 0 end
local old = tonumber(redis.call('HGET', KEYS[1], 'backlog') or '0')
local new = tonumber(ARGV[2])
redis.call('INCRBY', KEYS[2], new - old)
redis.call('HSET', KEYS[1], 'status', 'running', 'worker', ARGV[1], 'frames_total', new,
           'backlog', new, 'video', ARGV[3], 'frames_detected', 0)
if (redis.call('HGET', KEYS[1], 'started_at') or '') == '' then
  redis.call('HSET', KEYS[1], 'started_at', ARGV[4])
end
redis.call('HINCRBY', KEYS[1], 'deliveries', 1)
return 1
"""

# KEYS: job, backlog   ARGV: frames_total, video_json
SET_TOTAL_LUA = """
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
local old = tonumber(redis.call('HGET', KEYS[1], 'backlog') or '0')
local new = tonumber(ARGV[1])
redis.call('INCRBY', KEYS[2], new - old)
redis.call('HSET', KEYS[1], 'frames_total', new, 'backlog', new, 'video', ARGV[2])
return 1
"""

# KEYS: job, frames   ARGV: frames_detected ('' = leave it), field/value...
WRITE_LUA = """
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then
  return tonumber(redis.call('HGET', KEYS[1], 'frames_done') or '0')
end
for i = 2, #ARGV, 1000 do  -- chunks keep unpack() under Lua's stack limit
  redis.call('HSET', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
local n = redis.call('HLEN', KEYS[2])
redis.call('HSET', KEYS[1], 'frames_done', n)
if ARGV[1] ~= '' then redis.call('HSET', KEYS[1], 'frames_detected', ARGV[1]) end
return n
"""

# KEYS: job   ARGV: frames_detected
DETECTED_LUA = """
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'frames_detected', ARGV[1])
return 1
"""

# Terminal transition, shared by finish, cancel and dead_letter.
# KEYS: job, frames, backlog, stream, dead
# ARGV: status, now, ttl, group, entry_id, error_code, error_message, dead(0/1), job_id, model, reason,
#       prefix, dead_maxlen
# A cancel passes no entry_id: if the job's entry was never delivered it is deleted (no worker will
# get it); if a worker holds it, that worker sees the status and acks it.
FINISH_LUA = """
local st = redis.call('HGET', KEYS[1], 'status')
local changed = 0
if st == 'queued' or st == 'running' then
  if ARGV[8] == '1' then
    redis.call('XADD', KEYS[5], 'MAXLEN', '~', tonumber(ARGV[13]), '*', 'job_id', ARGV[9], 'model', ARGV[10],
               'entry_id', ARGV[5], 'reason', ARGV[11], 'at', ARGV[2])
  end
  if ARGV[5] == '' then
    local entry = redis.call('HGET', KEYS[1], 'entry_id')
    local model = redis.call('HGET', KEYS[1], 'model')
    if entry and model then
      local stream = ARGV[12] .. ':jobs:' .. model
      local ok, pending = pcall(redis.call, 'XPENDING', stream, ARGV[4], entry, entry, 1)
      if (not ok) or #pending == 0 then redis.call('XDEL', stream, entry) end
    end
  end
  redis.call('HSET', KEYS[1], 'status', ARGV[1], 'finished_at', ARGV[2],
             'error_code', ARGV[6], 'error_message', ARGV[7])
  local held = tonumber(redis.call('HGET', KEYS[1], 'backlog') or '0')
  if held ~= 0 then redis.call('DECRBY', KEYS[3], held) end
  redis.call('HSET', KEYS[1], 'backlog', 0)
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3]))
  changed = 1
end
if ARGV[5] ~= '' then
  redis.call('XACK', KEYS[4], ARGV[4], ARGV[5])
  redis.call('XDEL', KEYS[4], ARGV[5])
end
if st then return {changed, st} end
return {changed, ''}
"""

# KEYS: job, stream, frames   ARGV: group, old_entry_id, job_id
# Idempotent: run twice (a retry after a lost reply), the second run finds entry_id changed and adds
# nothing. `mark` = frames stored when the new delivery begins (see STRIKE_LUA).
REQUEUE_LUA = """
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[2], ARGV[2])
local st = redis.call('HGET', KEYS[1], 'status')
if st ~= 'queued' and st ~= 'running' then return 0 end
if redis.call('HGET', KEYS[1], 'entry_id') ~= ARGV[2] then return 1 end
local entry = redis.call('XADD', KEYS[2], '*', 'job_id', ARGV[3])
redis.call('HSET', KEYS[1], 'status', 'queued', 'entry_id', entry, 'worker', '',
           'mark', redis.call('HLEN', KEYS[3]))
return 1
"""

# A worker took the job's entry over from a dead one (XAUTOCLAIM). `mark` holds the frames stored when the
# dead worker's delivery began. It stored frames: the strikes are cleared. It stored none: a strike,
# shared by the jobs that worker held (`P:held:{worker}`, from its heartbeats), 1/N each.
# KEYS: job, frames   ARGV: prefix   Returns the job's strikes as a string ('-1': no longer queued/running).
STRIKE_LUA = """
local st = redis.call('HGET', KEYS[1], 'status')
if st ~= 'queued' and st ~= 'running' then return '-1' end
local stored = redis.call('HLEN', KEYS[2])
local strikes = tonumber(redis.call('HGET', KEYS[1], 'strikes') or '0')
if stored > tonumber(redis.call('HGET', KEYS[1], 'mark') or '0') then
  strikes = 0
else
  local held = 1
  local w = redis.call('HGET', KEYS[1], 'worker')
  if w and w ~= '' then held = tonumber(redis.call('GET', ARGV[1] .. ':held:' .. w) or '1') end
  strikes = strikes + 1 / math.max(1, held)
end
local text = string.format('%.4f', strikes)
redis.call('HSET', KEYS[1], 'strikes', text, 'mark', stored)
return text
"""

# Remove a consumer from the group if it is dead: no heartbeat since ARGV[3] (or none at all), idle in the
# group longer than ARGV[4] ms, and nothing pending (XGROUP DELCONSUMER would drop pending entries: the
# check and the delete must be one step). KEYS: stream, workers zset   ARGV: group, consumer, cutoff, idle_ms
DELCONSUMER_LUA = """
local beat = redis.call('ZSCORE', KEYS[2], ARGV[2])
if beat and tonumber(beat) > tonumber(ARGV[3]) then return 0 end
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  if f['name'] == ARGV[2] then
    if tonumber(f['pending']) ~= 0 or tonumber(f['idle']) <= tonumber(ARGV[4]) then return 0 end
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
    return 1
  end
end
return 0
"""
