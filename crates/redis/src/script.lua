-- One rate-limit bucket, kept in the hash KEYS[1]: the same token bucket as
-- Keel's in-process one (continuous refill, reservation and settlement into
-- bounded debt, drain-and-pause on an upstream 429), atomic because Redis
-- runs a script alone.
--
-- ARGV: op (take | settle | pause), capacity, refill per millisecond,
-- amount (tokens to take, tokens to settle, or milliseconds to pause),
-- now in milliseconds (empty: the Redis server's clock, which every
-- instance shares), the deepest debt in refills of the whole bucket.
--
-- Returns {status, value, tokens, pause_left_ms}: status 1 took `value`
-- tokens (or settled, or paused), status 0 refused and `value` is the wait
-- in milliseconds. A missing hash is a full bucket, so the hash expires
-- once it would be full again.
local key = KEYS[1]
local op = ARGV[1]
local capacity = tonumber(ARGV[2])
local per_ms = tonumber(ARGV[3])
local amount = tonumber(ARGV[4])
local now = tonumber(ARGV[5])
if now == nil then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

local state = redis.call('HMGET', key, 'tokens', 'updated', 'paused_until')
local tokens = tonumber(state[1]) or capacity
local updated = tonumber(state[2]) or now
local paused_until = tonumber(state[3]) or 0

-- Refill since the last update, never while paused.
local from = updated
if paused_until > now then
  from = now
elseif paused_until > 0 then
  from = math.max(paused_until, updated)
  paused_until = 0
end
if now > from then
  tokens = math.min(capacity, tokens + (now - from) * per_ms)
end

local status = 1
local value = 0
if op == 'take' then
  if paused_until > now then
    status = 0
    value = paused_until - now
  else
    local cost = math.min(amount, capacity)
    if tokens >= cost then
      tokens = tokens - cost
      value = cost
    else
      status = 0
      value = (cost - tokens) / per_ms
    end
  end
elseif op == 'settle' then
  local floor = -capacity * tonumber(ARGV[6])
  tokens = math.max(floor, math.min(capacity, tokens - amount))
elseif op == 'pause' then
  tokens = 0
  paused_until = now + amount
end

local pause_left = math.max(0, paused_until - now)
redis.call('HSET', key, 'tokens', tostring(tokens), 'updated', tostring(math.max(now, updated)),
  'paused_until', tostring(paused_until))
redis.call('PEXPIRE', key, math.ceil((capacity - tokens) / per_ms + pause_left) + 1000)
return {status, tostring(value), tostring(tokens), tostring(pause_left)}
