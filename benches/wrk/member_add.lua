-- PATCH /Groups/{big} adding one user who is not yet a member: each thread walks its own
-- half of the spare users (never members), so every request adds one.
local c = dofile((os.getenv("BENCH_LUA_DIR") or ".") .. "/common.lua")
c.member_phase("member_add", "spare-ids.txt", function(id)
  return '{"op":"add","path":"members","value":[{"value":"' .. id .. '"}]}'
end)
