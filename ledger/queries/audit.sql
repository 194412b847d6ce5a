-- name: append_audit_record
-- Appends one record to tenant $1's chain: moves the chain head on (its row lock makes
-- concurrent appends in the tenant take turns) and inserts the record it describes.
WITH head AS (
    INSERT INTO audit_chain_heads AS h (tenant_id, seq, prev_hash, head_hash, appended_at)
    SELECT $1, 1, genesis.hash,
           audit_record_hash($1, 1, genesis.hash, at.now, $2, $3, $4, $5, $6, $7, $8, $9, $10),
           at.now
    FROM (SELECT repeat('0', 64) AS hash) AS genesis, (SELECT clock_timestamp() AS now) AS at
    ON CONFLICT (tenant_id) DO UPDATE SET
        seq = h.seq + 1,
        prev_hash = h.head_hash,
        -- Later than the record before, even when this transaction read the clock
        -- before it waited for that one to commit, or the clock stepped back.
        appended_at = greatest(excluded.appended_at, h.appended_at + interval '1 microsecond'),
        head_hash = audit_record_hash(
            $1, h.seq + 1, h.head_hash,
            greatest(excluded.appended_at, h.appended_at + interval '1 microsecond'),
            $2, $3, $4, $5, $6, $7, $8, $9, $10)
    RETURNING h.seq, h.prev_hash, h.head_hash, h.appended_at
)
INSERT INTO audit_records (tenant_id, seq, created_at, actor, action, target_type, target_id,
                           category, level, ticket_id, agent_id, detail, prev_hash, hash)
SELECT $1, head.seq, head.appended_at, $2, $3, $4, $5, $6, $7, $8, $9, $10,
       head.prev_hash, head.head_hash
FROM head
RETURNING seq, created_at, actor, action, target_type, target_id, category, level,
          ticket_id, agent_id, detail, prev_hash, hash;
