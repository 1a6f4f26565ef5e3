-- wrk script: realistic heat-sdk batches for POST /ingest.
-- Each request is one batch of 20 events in the shape the browser SDK sends (see
-- /work/shared/fixtures): 2 pageviews, 12 clicks, 4 moves of 5 points, 2 scrolls, timed like a person. Event ids are
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
local run_started = 0

-- A desktop Chrome (a HeadlessChrome agent would make every session a bot: traffic.py).
local UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36"
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
  run_started = (os.time() - 7200) * 1000 -- sessions start in the hour before the last
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
  local batch = math.floor((counter - 1) / spacing) % 10 -- this batch's place in its session
  local session = "s-" .. nonce .. "-" .. thread_id .. "-" .. slot
  -- Timed like a person (traffic.py's behaviour rules would call fixed or machine-fast clicks a
  -- bot, and a bot's rows add to no aggregate): a session starts at its own second, each batch
  -- covers its own minute, events 300-2,500 ms apart, a pointer move after every third click.
  local started = run_started + (slot % 3600) * 1000
  local now = started + batch * 60000
  local parts = {}
  local n = 0
  local function id()
    n = n + 1
    return prefix .. "-" .. n
  end
  local function later()
    now = now + math.random(300, 2500)
    return now
  end
  local function move()
    local points = {}
    for p = 1, 5 do
      points[p] = '{"x":' .. math.random(0, 1279) .. ',"y":' .. math.random(0, 2400) .. ',"tsOffset":' .. (p * 16) .. '}'
    end
    event(parts, id(), session, later(), "move", ',"points":[' .. table.concat(points, ",") .. ']')
  end
  local first = now
  event(parts, id(), session, now, "pageview", ',"to":"' .. PATH .. '"')
  for c = 1, 12 do
    event(parts, id(), session, later(), "click",
      ',"x":' .. math.random(0, 1279) .. ',"y":' .. math.random(0, 2400) .. ',"selector":"button#b' .. math.random(1, 40) .. '","button":0')
    if c % 3 == 0 then move() end
  end
  for _ = 1, 2 do
    event(parts, id(), session, later(), "scroll", ',"scrollY":' .. math.random(0, 1600) .. ',"scrollDepthPct":' .. math.random(0, 100))
  end
  event(parts, id(), session, later(), "pageview", ',"from":"' .. PATH .. '","to":"' .. PATH .. '"')
  local body = '{"sdk":{"name":"@m-software-engineering/heat-sdk","version":"0.2.6"},"app":{},' ..
    '"session":{"id":"' .. session .. '","startedAt":' .. started .. ',"lastSeenAt":' .. now .. '},' ..
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
