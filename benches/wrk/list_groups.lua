-- GET /Groups?excludedAttributes=members&count=100: a page of groups without their members
-- (how Okta and Entra read groups), the 100,000-member group among them.
local c = dofile((os.getenv("BENCH_LUA_DIR") or ".") .. "/common.lua")
setup = c.setup
function request() return wrk.format("GET", wrk.path .. "/Groups?excludedAttributes=members&count=100") end
response = c.expect(function(s) return s == 200 end)
done = c.done("list_groups_no_members")
