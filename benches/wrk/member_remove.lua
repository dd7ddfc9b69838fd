-- PATCH /Groups/{big} removing one member, Entra's way (members[value eq "…"]): each
-- thread walks its own half of the shuffled original members, so every request removes one.
local c = dofile((os.getenv("BENCH_LUA_DIR") or ".") .. "/common.lua")
setup = c.setup
local next_id, group
function init(args)
  next_id = c.take(c.lines("member-ids.txt"), 2)
  group = c.lines("group-id.txt")[1]
end
function request()
  local body = '{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"remove","path":"members[value eq \\"' ..
    next_id() .. '\\"]"}]}'
  return wrk.format("PATCH", wrk.path .. "/Groups/" .. group, nil, body)
end
response = c.expect(function(s) return s == 204 or s == 200 end)
done = c.done("member_remove")
