"""The dispatcher: sends due runs to their lanes (a transactional outbox), rescues
expired leases and unclaimed dispatches (the reaper)."""
