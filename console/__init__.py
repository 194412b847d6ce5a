"""The operator console: server-rendered pages at `/console`, served by the API process.

It reads and acts through the same ledger methods the REST routes call, with the same
request models and role checks; it stores nothing of its own. See `console/README.md`.
"""
