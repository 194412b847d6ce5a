-- The dispatcher's metrics read tasks awaiting approval across tenants every few
-- seconds; without this index that is a scan of the whole ledger.
CREATE INDEX tasks_awaiting_approval ON tasks (lane, updated_at)
    WHERE status = 'awaiting_approval';
