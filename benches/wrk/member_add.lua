-- PATCH /Groups/{big} adding one user who is not yet a member: each thread walks its own
-- half of the spare users (never members), so every request adds one.
local c = dofile((os.getenv("BENCH_LUA_DIR") or ".") .. "/common.lua")
setup = c.setup
local next_id, group
function init(args)
  next_id = c.take(c.lines("spare-ids.txt"), 2)
  group = c.lines("group-id.txt")[1]
end
function request()
  local body = '{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","path":"members","value":[{"value":"' ..
    next_id() .. '"}]}]}'
  return wrk.format("PATCH", wrk.path .. "/Groups/" .. group, nil, body)
end
response = c.expect(function(s) return s == 204 or s == 200 end)
done = c.done("member_add")
