-- PATCH /Users/{id} replacing active (Okta's and Entra's deactivate/reactivate), on random
-- seeded users, alternating false and true.
local c = dofile((os.getenv("BENCH_LUA_DIR") or ".") .. "/common.lua")
setup = c.setup
local ids
local flip = false
function init(args) ids = c.lines("sample-ids.txt"); math.randomseed(thread_no + 13) end
function request()
  flip = not flip
  local body = '{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"active","value":' ..
    tostring(not flip) .. '}]}'
  return wrk.format("PATCH", wrk.path .. "/Users/" .. ids[math.random(#ids)], nil, body)
end
response = c.expect(function(s) return s == 200 end)
done = c.done("patch_active")
