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

-- name: verify_audit_chunk
-- Checks up to $4 of tenant $1's records after sequence number $2 (whose hash is $3), in
-- order: how many there were, the last one's number and hash, and the first that breaks
-- the chain (a number out of turn, a link to other than the record before, or a hash
-- other than its fields give), with what was expected and what was found.
WITH chunk AS (
    SELECT * FROM audit_records
    WHERE tenant_id = $1 AND seq > $2
    ORDER BY seq
    LIMIT $4
), checked AS (
    SELECT seq, hash, prev_hash,
           lag(seq, 1, $2) OVER in_order AS before_seq,
           lag(hash, 1, $3) OVER in_order AS before_hash,
           audit_record_hash(tenant_id, seq, prev_hash, created_at, actor, action,
                             target_type, target_id, category, level, ticket_id,
                             agent_id, detail) AS computed
    FROM chunk
    WINDOW in_order AS (ORDER BY seq)
), judged AS (
    SELECT seq, hash,
           CASE WHEN seq <> before_seq + 1 THEN 'sequence_gap'
                WHEN prev_hash <> before_hash THEN 'broken_link'
                WHEN hash <> computed THEN 'hash_mismatch' END AS reason,
           CASE WHEN seq <> before_seq + 1 THEN (before_seq + 1)::text
                WHEN prev_hash <> before_hash THEN before_hash
                ELSE computed END AS expected,
           CASE WHEN seq <> before_seq + 1 THEN seq::text
                WHEN prev_hash <> before_hash THEN prev_hash
                ELSE hash END AS found
    FROM checked
), broken AS (
    SELECT * FROM judged WHERE reason IS NOT NULL ORDER BY seq LIMIT 1
)
SELECT (SELECT count(*) FROM judged) AS read,
       (SELECT count(*) FROM judged WHERE seq < (SELECT seq FROM broken)) AS read_before_break,
       (SELECT seq FROM judged ORDER BY seq DESC LIMIT 1) AS last_seq,
       (SELECT hash FROM judged ORDER BY seq DESC LIMIT 1) AS last_hash,
       broken.seq AS break_seq, broken.reason, broken.expected, broken.found
FROM (SELECT) AS one
LEFT JOIN broken ON true;

-- name: get_audit_chain_head
-- Tenant $1's chain head: the last number handed out and that record's hash.
SELECT seq, head_hash FROM audit_chain_heads WHERE tenant_id = $1;
