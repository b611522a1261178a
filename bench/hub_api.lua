-- wrk script for bench/hub_api.py: pages of the hub's container listing at random offsets, with a token.
--
-- wrk -t T -c C -s hub_api.lua URL -- TOKEN PAGE CONTAINERS RATE THREADS
--
-- RATE 0: closed loop, each connection sends its next request as soon as the last is answered.
-- RATE > 0: open loop at RATE requests a second in all; each wrk thread keeps a schedule fixed in advance
-- (slot k due at start + k / rate) and delay() waits for the next slot. A request sent after its slot (every
-- connection was busy) counts as late, and the latest one is reported, so a run where requests queued in
-- the generator instead of the server shows it (wrk's latency counts from the send).
-- done() prints one JSON line for the Python side: requests, non-2xx answers, socket errors, latency
-- percentiles in milliseconds, and lateness.

local token, page, containers, interval_ms
local start_ms, slot = nil, 0
local threads = {}
-- globals, read by done() through thread:get()
non2xx, late, late_max = 0, 0, 0

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } hub_timespec;
  int clock_gettime(int clock_id, hub_timespec *tp);
]]
local clock = ffi.new("hub_timespec")

local function now_ms()
  ffi.C.clock_gettime(1, clock) -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
end

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  token, page, containers = args[1], tonumber(args[2]), tonumber(args[3])
  local rate, thread_count = tonumber(args[4]), tonumber(args[5])
  if rate > 0 then
    interval_ms = 1000 * thread_count / rate
  end
  math.randomseed(os.time() + #threads + math.floor(now_ms()))
end

function delay()
  if interval_ms == nil then
    return 0
  end
  local now = now_ms()
  start_ms = start_ms or now
  local due = start_ms + slot * interval_ms
  slot = slot + 1
  if now > due then
    late = late + 1
    late_max = math.max(late_max, now - due)
    return 0
  end
  return math.floor(due - now)
end

function request()
  local offset = math.random(0, containers - page)
  return wrk.format("GET", wrk.path .. "?limit=" .. page .. "&offset=" .. offset,
                    {["Authorization"] = "Bearer " .. token})
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local failed, behind, worst = 0, 0, 0
  for _, thread in ipairs(threads) do
    failed = failed + thread:get("non2xx")
    behind = behind + thread:get("late")
    worst = math.max(worst, thread:get("late_max"))
  end
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format(
    '{"requests": %d, "non2xx": %d, "errors": %d, "p50": %.3f, "p95": %.3f, "p99": %.3f, "max": %.3f, ' ..
    '"late": %d, "late_max": %.1f}\n',
    summary.requests, failed, errors, latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, behind, worst))
end
