-- wrk script for bench/location_monitor.py: POSTs of request counts at a constant rate per thread.
--
-- wrk -t T -c C -s location_monitor.lua URL -- RATE ITEMS SERVICES LOCATIONS SEED T
--
-- Each thread sends RATE / T requests a second on a schedule fixed in advance (slot k is due at
-- start + k / rate): before each request, delay() takes the next slot and waits for it. When every
-- connection is busy past a slot, the request goes out late; how late is recorded, so a generator that
-- falls behind shows it (wrk's own latency counts from the send). Every body's counts add up to
-- COUNT_PER_POST, so the monitor's total can be checked against the number of answered requests.
-- done() prints one JSON line for the Python side.

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } usm_timespec;
  int clock_gettime(int clock_id, usm_timespec *tp);
]]
local clock = ffi.new("usm_timespec")
local CLOCK_MONOTONIC = 1
local COUNT_PER_POST = 12

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, clock)
  return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
end

local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

local interval_ms, start_ms, slot = nil, nil, 0
local requests = {}
local fresh = nil -- with LOCATIONS 0: make a new body (new places) for every request
-- globals, read by done() through thread:get()
late = {} -- histogram of lateness in whole ms (0: on time)
late_max, slots = 0, 0

local function body(count_items, services, places)
  local items, left = {}, COUNT_PER_POST
  for i = 1, count_items do
    local count = left
    if i < count_items then
      count = math.random(0, math.min(left, math.floor(2 * COUNT_PER_POST / count_items)))
    end
    left = left - count
    local latitude, longitude = math.random() * 130 - 60, math.random() * 340 - 170
    if #places > 0 then
      local place = places[math.random(#places)]
      latitude, longitude = place[1], place[2]
    end
    items[i] = string.format('{"service":"service-%d","latitude":%.4f,"longitude":%.4f,"count":%d}',
      math.random(0, services - 1), latitude, longitude, count)
  end
  return "[" .. table.concat(items, ",") .. "]"
end

function init(args)
  local rate = tonumber(args[1])
  local items, services, locations, seed = tonumber(args[2]), tonumber(args[3]), tonumber(args[4]), tonumber(args[5])
  local threads_count = tonumber(args[6])
  interval_ms = 1000 * threads_count / rate
  math.randomseed(seed)
  local places = {}
  for i = 1, locations do
    places[i] = { math.random() * 130 - 60, math.random() * 340 - 170 }
  end
  math.randomseed(seed + 1 + tonumber(wrk.thread:get("id")))
  local headers = { ["Content-Type"] = "application/json" }
  if locations == 0 then
    fresh = function() return wrk.format("POST", "/metrics", headers, body(items, services, places)) end
    return
  end
  for i = 1, 1000 do
    requests[i] = wrk.format("POST", "/metrics", headers, body(items, services, places))
  end
end

function delay()
  local now = now_ms()
  if start_ms == nil then
    start_ms = now
  end
  local due = start_ms + slot * interval_ms
  slot = slot + 1
  slots = slots + 1
  local behind = now - due
  if behind > 0 then
    local bucket = math.floor(behind)
    late[bucket] = (late[bucket] or 0) + 1
    if behind > late_max then
      late_max = behind
    end
    return 0
  end
  late[0] = (late[0] or 0) + 1
  return math.floor(-behind)
end

function request()
  if fresh then
    return fresh()
  end
  return requests[(slot % #requests) + 1]
end

local function late_percentile(histograms, total, worst, p)
  local want, seen = total * p, 0
  for ms = 0, math.ceil(worst) do
    for _, histogram in ipairs(histograms) do
      seen = seen + (histogram[ms] or 0)
    end
    if seen >= want then
      return ms
    end
  end
  return -1
end

function done(summary, latency, _)
  local histograms, total, worst = {}, 0, 0
  for _, thread in ipairs(threads) do
    local histogram = thread:get("late")
    table.insert(histograms, histogram)
    total = total + thread:get("slots")
    worst = math.max(worst, thread:get("late_max"))
  end
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "non_200": %d, "connect_errors": %d, "read_errors": %d, ' ..
    '"write_errors": %d, "timeouts": %d, "count_per_post": %d, ' ..
    '"latency_us": {"p50": %d, "p95": %d, "p99": %d, "max": %d}, ' ..
    '"late_ms": {"p50": %d, "p99": %d, "max": %.1f, "slots": %d}}\n',
    summary.requests, summary.duration, errors.status, errors.connect, errors.read, errors.write, errors.timeout,
    COUNT_PER_POST, latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max,
    late_percentile(histograms, total, worst, 0.5), late_percentile(histograms, total, worst, 0.99), worst, total))
end
