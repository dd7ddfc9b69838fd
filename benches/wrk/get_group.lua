-- GET /Groups/{id} of the group of 100,000 members (its whole member list, about 10 MB).
local c = dofile((os.getenv("BENCH_LUA_DIR") or ".") .. "/common.lua")
setup = c.setup
local group
function init(args) group = c.lines("group-id.txt")[1] end
function request() return wrk.format("GET", wrk.path .. "/Groups/" .. group) end
response = c.expect(function(s) return s == 200 end)
done = c.done("get_group_100k")
