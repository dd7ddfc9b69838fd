-- GET /Users?filter=userName eq "…" on random seeded users (as Entra and Okta look a user up).
local c = dofile((os.getenv("BENCH_LUA_DIR") or ".") .. "/common.lua")
setup = c.setup
local n
function init(args) n = tonumber(os.getenv("BENCH_USERS")); math.randomseed(thread_no + 7) end
function request()
  local name = "user" .. math.random(0, n - 1) .. "%40bench.example"
  return wrk.format("GET", wrk.path .. "/Users?filter=userName%20eq%20%22" .. name .. "%22")
end
response = c.expect(function(s) return s == 200 end)
done = c.done("filter_username_eq")
