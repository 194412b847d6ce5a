"""The task ledger: schema, named SQL, the state machine, policy and the one asyncpg call site."""
