-- Rate-limit buckets, each kept in one hash (KEYS[i]): the same token
-- bucket as Keel's in-process one (continuous refill, reservation and
-- settlement into bounded debt, drain-and-pause on an upstream 429),
-- atomic because Redis runs a script alone. One call may take from several
-- buckets at once, all or none, so an admission is one round trip.
--
-- ARGV: op (take | settle | pause), now in milliseconds (empty: the Redis
-- server's clock, which every instance shares), the deepest debt in refills
-- of a whole bucket, then for each key: capacity, refill per millisecond,
-- amount (tokens to take, tokens to settle, or milliseconds to pause).
--
-- Returns {status, value, index, {tokens, pause_left_ms, ...}}: status 1
-- took (or settled, or paused) and `value` is what the first bucket gave;
-- status 0 refused, `index` (1-based) is the bucket that refused and
-- `value` its wait in milliseconds, and nothing was taken from any bucket.
-- The list holds each bucket's tokens and pause left, in key order. A
-- missing hash is a full bucket, so each hash expires once it would be
-- full again.
local op = ARGV[1]
local now = tonumber(ARGV[2])
if now == nil then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end
local max_debt = tonumber(ARGV[3])

-- Every bucket's state, refilled up to now (never while paused).
local buckets = {}
for i, key in ipairs(KEYS) do
  local base = 3 + (i - 1) * 3
  local bucket = {
    capacity = tonumber(ARGV[base + 1]),
    per_ms = tonumber(ARGV[base + 2]),
    amount = tonumber(ARGV[base + 3]),
  }
  local state = redis.call('HMGET', key, 'tokens', 'updated', 'paused_until')
  bucket.tokens = tonumber(state[1]) or bucket.capacity
  bucket.updated = tonumber(state[2]) or now
  bucket.paused_until = tonumber(state[3]) or 0
  local from = bucket.updated
  if bucket.paused_until > now then
    from = now
  elseif bucket.paused_until > 0 then
    from = math.max(bucket.paused_until, bucket.updated)
    bucket.paused_until = 0
  end
  if now > from then
    bucket.tokens = math.min(bucket.capacity, bucket.tokens + (now - from) * bucket.per_ms)
  end
  buckets[i] = bucket
end

local function reply(status, value, index)
  local states = {}
  for _, bucket in ipairs(buckets) do
    table.insert(states, tostring(bucket.tokens))
    table.insert(states, tostring(math.max(0, bucket.paused_until - now)))
  end
  return {status, tostring(value), index, states}
end

if op == 'take' then
  -- All or none: find a refusal before changing anything.
  for i, bucket in ipairs(buckets) do
    if bucket.paused_until > now then
      return reply(0, bucket.paused_until - now, i)
    end
    bucket.cost = math.min(bucket.amount, bucket.capacity)
    if bucket.tokens < bucket.cost then
      return reply(0, (bucket.cost - bucket.tokens) / bucket.per_ms, i)
    end
  end
  for _, bucket in ipairs(buckets) do
    bucket.tokens = bucket.tokens - bucket.cost
  end
elseif op == 'settle' then
  for _, bucket in ipairs(buckets) do
    local floor = -bucket.capacity * max_debt
    bucket.tokens = math.max(floor, math.min(bucket.capacity, bucket.tokens - bucket.amount))
  end
elseif op == 'pause' then
  for _, bucket in ipairs(buckets) do
    bucket.tokens = 0
    bucket.paused_until = now + bucket.amount
  end
end

for i, key in ipairs(KEYS) do
  local bucket = buckets[i]
  redis.call('HSET', key, 'tokens', tostring(bucket.tokens),
    'updated', tostring(math.max(now, bucket.updated)), 'paused_until', tostring(bucket.paused_until))
  local pause_left = math.max(0, bucket.paused_until - now)
  redis.call('PEXPIRE', key, math.ceil((bucket.capacity - bucket.tokens) / bucket.per_ms + pause_left) + 1000)
end
return reply(1, buckets[1].cost or 0, 0)
