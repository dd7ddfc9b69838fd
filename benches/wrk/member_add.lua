-- PATCH /Groups/{big} adding one user who is not yet a member (each thread its own slice
-- of the spare users).
local c = dofile((os.getenv("BENCH_LUA_DIR") or ".") .. "/common.lua")
setup = c.setup
local ids, group
local next_i = 0
function init(args) ids = c.lines("spare-ids.txt"); group = c.lines("group-id.txt")[1] end
function request()
  local i = (thread_no * 1000003 + next_i) % #ids + 1
  next_i = next_i + 1
  local body = '{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","path":"members","value":[{"value":"' ..
    ids[i] .. '"}]}]}'
  return wrk.format("PATCH", wrk.path .. "/Groups/" .. group, nil, body)
end
response = c.expect(function(s) return s == 204 or s == 200 end)
done = c.done("member_add")
