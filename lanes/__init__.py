"""Lanes carry wake-up hints from the dispatcher to workers. Postgres decides who owns a
run; a lane message only says "run R of task T, attempt A, may be ready"."""
