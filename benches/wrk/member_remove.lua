-- PATCH /Groups/{big} removing one member, Entra's way (members[value eq "…"]); each
-- thread walks its own half of the shuffled member list, so every request removes a member.
local c = dofile((os.getenv("BENCH_LUA_DIR") or ".") .. "/common.lua")
setup = c.setup
local ids, group
local next_i = 0
function init(args) ids = c.lines("member-ids.txt"); group = c.lines("group-id.txt")[1] end
function request()
  local i = (thread_no * math.floor(#ids / 2) + next_i) % #ids + 1
  next_i = next_i + 1
  local body = '{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"remove","path":"members[value eq \\"' ..
    ids[i] .. '\\"]"}]}'
  return wrk.format("PATCH", wrk.path .. "/Groups/" .. group, nil, body)
end
response = c.expect(function(s) return s == 204 or s == 200 end)
done = c.done("member_remove")
