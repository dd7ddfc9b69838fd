-- POST /Users with a new userName each time (an IdP's initial cycle).
local c = dofile((os.getenv("BENCH_LUA_DIR") or ".") .. "/common.lua")
setup = c.setup
local counter = 0
local run = os.getenv("BENCH_RUN") or "0"
function request()
  counter = counter + 1
  local name = "new-" .. run .. "-" .. thread_no .. "-" .. counter .. "@bench.example"
  local body = '{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"' .. name ..
    '","name":{"givenName":"New","familyName":"User"},"emails":[{"value":"' .. name ..
    '","type":"work","primary":true}],"active":true}'
  return wrk.format("POST", wrk.path .. "/Users", nil, body)
end
response = c.expect(function(s) return s == 201 end)
done = c.done("create")
