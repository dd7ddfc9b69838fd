-- The same GET shape against benches/ceiling.rs.
local c = dofile((os.getenv("BENCH_LUA_DIR") or ".") .. "/common.lua")
setup = c.setup
response = c.expect(function(s) return s == 200 end)
done = c.done("ceiling")
