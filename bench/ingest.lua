-- wrk script: realistic heat-sdk batches for POST /ingest.
-- Each request is one batch of 20 events in the shape the browser SDK sends (see
-- /work/shared/fixtures): 2 pageviews, 12 clicks, 4 moves of 5 points, 2 scrolls. Event ids are
-- unique per request (run nonce, thread, counter). Ten batches share a session and, as from a real
-- page, they follow one another instead of overlapping: with C connections, batch k of session s is
-- request s + k*C (so the C requests in flight belong to C different sessions).
-- Usage: wrk -s bench/ingest.lua URL -- <nonce> [project-key] [connections]
-- done() prints one JSON line "WRKJSON {...}" that bench/bench.py parses.

local threads = {}
local counter = 0
local nonce = "n"
local project_key = "bench-project"
local thread_id = 0
local spacing = 16

local UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36"
local DEVICE = '"device":{"ua":"' .. UA .. '","platform":"Linux x86_64","language":"en-US"}'
local VIEWPORT = '"viewport":{"w":1280,"h":720,"dpr":1}'
local META = '"meta":{"viewportBucket":"1300x700"}'
local PATH = "/bench"

function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  if args[1] then nonce = args[1] end
  if args[2] then project_key = args[2] end
  if args[3] then spacing = tonumber(args[3]) end
  math.randomseed(os.time() + thread_id * 7919)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-Project-Key"] = project_key
  wrk.headers["User-Agent"] = UA
end

local function event(parts, id, session, ts, kind, body)
  parts[#parts + 1] = '{"eventId":"' .. id .. '","sessionId":"' .. session .. '","ts":' .. ts ..
    ',"path":"' .. PATH .. '",' .. VIEWPORT .. ',' .. DEVICE .. ',' .. META .. ',"type":"' .. kind .. '"' .. body .. '}'
end

function request()
  counter = counter + 1
  local prefix = nonce .. "-" .. thread_id .. "-" .. counter
  local slot = (counter - 1) % spacing + spacing * math.floor((counter - 1) / (10 * spacing))
  local session = "s-" .. nonce .. "-" .. thread_id .. "-" .. slot
  local now = os.time() * 1000 + (counter % 1000)
  local parts = {}
  local n = 0
  local function id()
    n = n + 1
    return prefix .. "-" .. n
  end
  event(parts, id(), session, now, "pageview", ',"to":"' .. PATH .. '"')
  for _ = 1, 12 do
    event(parts, id(), session, now + n, "click",
      ',"x":' .. math.random(0, 1279) .. ',"y":' .. math.random(0, 2400) .. ',"selector":"button#b' .. math.random(1, 40) .. '","button":0')
  end
  for _ = 1, 4 do
    local points = {}
    for p = 1, 5 do
      points[p] = '{"x":' .. math.random(0, 1279) .. ',"y":' .. math.random(0, 2400) .. ',"tsOffset":' .. (p * 16) .. '}'
    end
    event(parts, id(), session, now + n, "move", ',"points":[' .. table.concat(points, ",") .. ']')
  end
  for _ = 1, 2 do
    event(parts, id(), session, now + n, "scroll", ',"scrollY":' .. math.random(0, 1600) .. ',"scrollDepthPct":' .. math.random(0, 100))
  end
  event(parts, id(), session, now + n, "pageview", ',"from":"' .. PATH .. '","to":"' .. PATH .. '"')
  local body = '{"sdk":{"name":"@m-software-engineering/heat-sdk","version":"0.2.6"},"app":{},' ..
    '"session":{"id":"' .. session .. '","startedAt":' .. now .. ',"lastSeenAt":' .. (now + 1000) .. '},' ..
    '"user":{"id":"user-' .. thread_id .. '-' .. slot .. '","traits":{"plan":"pro"}},' ..
    '"events":[' .. table.concat(parts, ",") .. ']}'
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"non2xx":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
