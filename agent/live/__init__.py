"""Live delivery of stored trade events: the fan-out hub between the positions poller and the stream
(`agent.api.stream`). Knows no HTTP; the API layer imports it, the composition root wires it."""
