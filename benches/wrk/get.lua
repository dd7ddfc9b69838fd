-- GET /Users/{id} on random seeded users.
local c = dofile((os.getenv("BENCH_LUA_DIR") or ".") .. "/common.lua")
setup = c.setup
local ids
function init(args) ids = c.lines("sample-ids.txt"); math.randomseed(thread_no + 1) end
function request() return wrk.format("GET", wrk.path .. "/Users/" .. ids[math.random(#ids)]) end
response = c.expect(function(s) return s == 200 end)
done = c.done("get_by_id")
