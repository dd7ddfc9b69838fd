-- GET /Users?startIndex=…&count=100: pages of 100 at random places in the first 10,000
-- users (as Okta pages through an import).
local c = dofile((os.getenv("BENCH_LUA_DIR") or ".") .. "/common.lua")
setup = c.setup
function init(args) math.randomseed(thread_no + 17) end
function request()
  return wrk.format("GET", wrk.path .. "/Users?startIndex=" .. (math.random(0, 99) * 100 + 1) .. "&count=100")
end
response = c.expect(function(s) return s == 200 end)
done = c.done("list_page_100")
