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

-- name: plan_feed_for_its_filters
-- For the rest of the transaction, plan each statement for its arguments: a filter left
-- out is NULL, and only a plan made knowing which filters are given uses their index.
SET LOCAL plan_cache_mode = force_custom_plan;

-- name: audit_feed_records
-- Tenant $1's audit records older than $2 (none: from the newest), newest first, at most
-- $11, with the feed's filters, each NULL when not given: actor $3, action $4, category
-- $5, level $6, target id $7, ticket $8, agent $9, full-text query $10. (Times are
-- unique in a tenant's chain: no tie to break.)
SELECT 'audit' AS source, seq::text AS key, created_at, actor, action, category, level,
       target_type, target_id, ticket_id, agent_id, detail,
       action || ' ' || target_type || ' ' || target_id AS summary
FROM audit_records
WHERE tenant_id = $1
  AND ($2::timestamptz IS NULL OR created_at < $2)
  AND ($3::text IS NULL OR actor = $3)
  AND ($4::text IS NULL OR action = $4)
  AND ($5::text IS NULL OR category = $5)
  AND ($6::text IS NULL OR level = $6)
  AND ($7::text IS NULL OR target_id = $7)
  AND ($8::text IS NULL OR ticket_id = $8)
  AND ($9::text IS NULL OR agent_id = $9)
  AND ($10::text IS NULL OR search @@ websearch_to_tsquery('simple', $10))
ORDER BY created_at DESC
LIMIT $11;

-- name: audit_feed_events
-- Tenant $1's trace events before the position ($2, $3, $4: time, task, seq; none: from
-- the newest), newest first, at most $13, with the feed's filters as in
-- audit_feed_records from $5 on ($14: the ticket as a uuid, NULL when it is none). An
-- event's category is `operations`, its level follows from its kind, its target is its
-- task; its ticket is the one its data names or else its task's (ticket_tasks), its
-- agent the one its data names. The filters are checked on the tenant's latest 20,000
-- events before the position (of the ticket's tasks, when a ticket is given), so a
-- filter that matches little costs a bounded scan, not the tenant's whole trace.
SELECT 'event' AS source, task_id::text || ':' || seq AS key, created_at, actor,
       kind AS action, 'operations' AS category, level, 'task' AS target_type,
       task_id::text AS target_id, ticket_id, data->>'agent_id' AS agent_id,
       data AS detail, message AS summary
FROM (
    SELECT e.*,
           CASE WHEN kind IN ('failed', 'blocked', 'fence_refused', 'lease_expired',
                              'dead_lettered') THEN 'error'
                WHEN kind LIKE '%refused' OR kind LIKE 'break_glass%'
                     OR kind IN ('denied', 'rejected', 'rollback_requested') THEN 'warning'
                ELSE 'info' END AS level,
           coalesce(data->>'ticket_id', (SELECT t.ticket_id::text FROM ticket_tasks t
                                         WHERE t.task_id = e.task_id LIMIT 1)) AS ticket_id
    FROM trace_events e
    WHERE tenant_id = $1
      AND ($2::timestamptz IS NULL
           OR (created_at <= $2 AND (created_at, task_id, seq) < ($2, $3::uuid, $4::integer)))
      AND ($10::text IS NULL OR data->>'ticket_id' = $10
           OR task_id IN (SELECT t.task_id FROM ticket_tasks t WHERE t.ticket_id = $14::uuid))
    ORDER BY created_at DESC, task_id DESC, seq DESC
    LIMIT 20000
) AS latest
WHERE ($5::text IS NULL OR actor = $5)
  AND ($6::text IS NULL OR kind = $6)
  AND ($7::text IS NULL OR $7 = 'operations')
  AND ($8::text IS NULL OR level = $8)
  AND ($9::text IS NULL OR task_id::text = $9)
  AND ($11::text IS NULL OR data->>'agent_id' = $11)
  AND ($12::text IS NULL OR to_tsvector('simple', kind || ' ' || message)
                            @@ websearch_to_tsquery('simple', $12))
ORDER BY created_at DESC, task_id DESC, seq DESC
LIMIT $13;

-- name: audit_feed_notes
-- Tenant $1's ticket notes of a visibility in $12 before the position ($2, $3: time, note
-- id; none: from the newest), newest first, at most $13, with the feed's filters as in
-- audit_feed_records from $4 on (the target $8 and ticket $9 as uuids). A note's action
-- is its kind, its category `ticket`, its level `info`, its target its ticket. The other
-- filters are checked on the latest 20,000 notes before the position (of the ticket,
-- when one is given), a bounded scan.
SELECT 'note' AS source, id::text AS key, created_at, author AS actor, kind AS action,
       'ticket' AS category, 'info' AS level, 'ticket' AS target_type,
       ticket_id::text AS target_id, ticket_id::text AS ticket_id,
       data->>'agent_id' AS agent_id,
       jsonb_build_object('source', source, 'visibility', visibility, 'data', data) AS detail,
       body AS summary
FROM (
    SELECT * FROM ticket_notes
    WHERE tenant_id = $1
      AND visibility = ANY ($12::text[])
      AND ($8::uuid IS NULL OR ticket_id = $8)
      AND ($9::uuid IS NULL OR ticket_id = $9)
      AND ($2::timestamptz IS NULL
           OR (created_at <= $2 AND (created_at, id) < ($2, $3::uuid)))
    ORDER BY created_at DESC, id DESC
    LIMIT 20000
) AS latest
WHERE ($4::text IS NULL OR author = $4)
  AND ($5::text IS NULL OR kind = $5)
  AND ($6::text IS NULL OR $6 = 'ticket')
  AND ($7::text IS NULL OR $7 = 'info')
  AND ($10::text IS NULL OR data->>'agent_id' = $10)
  AND ($11::text IS NULL OR to_tsvector('simple', kind || ' ' || body)
                            @@ websearch_to_tsquery('simple', $11))
ORDER BY created_at DESC, id DESC
LIMIT $13;
