"""Plain types the agent's layers share: accounts, runs, freshness. No I/O, and nothing imported from
the rest of `agent` (the layer every other one may import); `tasks` is how each long-running part stops."""
