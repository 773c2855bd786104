-- Chaos: seeded random programs (spec/fixtures/chaos.lua) mixing every
-- primitive with random cancellations, on both clocks, each checked
-- against the invariants listed there (permits conserved, every sent
-- value received exactly once, nothing left alive or open, memory back
-- to the baseline). A fixed set of seeds runs here; `make chaos SEEDS=N`
-- runs N random ones, and a failure prints the command that replays it.
local chaos = require "fixtures.chaos"

-- seeds per Lua version: most on 5.4 (the primary), fewer on the others
local SEEDS = _VERSION == "Lua 5.4" and 400 or 150
local GROUP = 50

describe("chaos", function()
  for first = 1, SEEDS, GROUP do
    local last = first + GROUP - 1
    it(("seeds %d to %d hold every invariant"):format(first, last), function()
      local report = {}
      for seed = first, last do
        local ok, bad = chaos.run(seed)
        if not ok then
          report[#report + 1] = ("seed %d (%s):\n    %s\n    replay: %s"):format(seed,
            chaos.describe(seed), table.concat(bad, "\n    "), chaos.replay(seed))
        end
      end
      assert(#report == 0, "\n" .. table.concat(report, "\n"))
    end)
  end
end)
