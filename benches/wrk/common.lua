-- Shared by the phase scripts of benches/run.sh. A phase script sets `phase` and
-- defines `request`; ids come from files the seeder wrote (BENCH_SEED_DIR).
local M = {}

function M.lines(name)
  local dir = os.getenv("BENCH_SEED_DIR") or "."
  local t = {}
  for line in io.lines(dir .. "/" .. name) do
    if line ~= "" then t[#t + 1] = line end
  end
  return t
end

-- Each wrk thread gets a number, so threads work on disjoint parts of a list.
local threads = {}
function M.setup(thread)
  thread:set("thread_no", #threads)
  threads[#threads + 1] = thread
end

-- Phases that change one member each walk a slice of a list per thread; a request past
-- the end of its slice reuses an id (and so changes nothing). `take` counts those in the
-- thread's "reused", reported by done(): such a phase ran too long for its list.
function M.take(ids, slices)
  local size = math.floor(#ids / slices)
  local n = 0
  reused = 0
  return function()
    if n >= size then reused = reused + 1 end
    local id = ids[thread_no * size + (n % size) + 1]
    n = n + 1
    return id
  end
end

-- A phase that PATCHes the big group once per request, each time about a different user:
-- `list` is the seeder's file of ids, `operation(id)` the JSON of the one operation.
function M.member_phase(phase, list, operation)
  local next_id, group
  init = function(args)
    next_id = M.take(M.lines(list), 2)
    group = M.lines("group-id.txt")[1]
  end
  request = function()
    local body = '{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[' .. operation(next_id()) .. ']}'
    return wrk.format("PATCH", wrk.path .. "/Groups/" .. group, nil, body)
  end
  setup = M.setup
  response = M.expect(function(s) return s == 204 or s == 200 end)
  done = M.done(phase)
end

-- Prints one JSON line; benches/run.sh collects them. Any non-2xx answer or socket
-- error is counted: a phase with errors is not a valid measurement.
function M.done(phase)
  return function(summary, latency, requests)
    local e = summary.errors
    local reused = 0
    for _, t in ipairs(threads) do reused = reused + (t:get("reused") or 0) end
    io.write(string.format(
      '{"phase":"%s","requests":%d,"seconds":%.2f,"rps":%.0f,"p50_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,"errors":%d,"reused":%d}\n',
      phase, summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
      latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
      e.connect + e.read + e.write + e.timeout + e.status, reused))
  end
end

-- A response other than the expected status is printed once per thread, so a broken
-- phase says why.
function M.expect(status_ok)
  local shown = false
  return function(status, headers, body)
    if not status_ok(status) and not shown then
      shown = true
      io.stderr:write("unexpected " .. status .. ": " .. (body or "") .. "\n")
    end
  end
end

return M
