-- PATCH /Groups/{big} removing one member, Entra's way (members[value eq "…"]): each
-- thread walks its own half of the shuffled original members, so every request removes one.
local c = dofile((os.getenv("BENCH_LUA_DIR") or ".") .. "/common.lua")
c.member_phase("member_remove", "member-ids.txt", function(id)
  return '{"op":"remove","path":"members[value eq \\"' .. id .. '\\"]"}'
end)
