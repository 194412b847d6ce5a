-- name: ensure_workspace_channels
-- The named channels a workspace ($2) declares, made in tenant $1 if missing: names
-- $3, ids for new ones $4, display names $5, purposes $6, message kinds $7 (each
-- channel's comma-separated).
INSERT INTO coordination_channels (id, tenant_id, workspace, name, display_name, purpose,
                                   allowed_message_kinds)
SELECT d.id, $1, $2, d.name, d.display_name, d.purpose,
       string_to_array(d.kinds, ',')
FROM unnest($3::text[], $4::uuid[], $5::text[], $6::text[], $7::text[])
     AS d(name, id, display_name, purpose, kinds)
ON CONFLICT (tenant_id, workspace, name) DO NOTHING;

-- name: visible_channels
-- The channels session $1 of tenant $2 sees, with how far it has read each and what it
-- has not read: its session tree's run channels (root $3) and the named channels $5 of
-- its workspace $4. Unread: messages from others, to everyone or to it, after its
-- read position. In the order they were made.
SELECT c.*, coalesce(r.read_seq, 0) AS read_seq,
       (SELECT count(*) FROM channel_messages m
        WHERE m.channel_id = c.id AND m.seq > coalesce(r.read_seq, 0)
          AND m.from_session_id <> $1
          AND (m.to_session_id IS NULL OR m.to_session_id = $1)) AS unread_count
FROM coordination_channels c
LEFT JOIN channel_reads r ON r.channel_id = c.id AND r.session_id = $1
WHERE c.tenant_id = $2
  AND (c.root_session_id = $3
       OR (c.run_id IS NULL AND c.workspace = $4 AND c.name = ANY($5::text[])))
ORDER BY c.created_at, c.id;

-- name: get_channel
-- One channel of a tenant ($1 id, $2 tenant).
SELECT * FROM coordination_channels WHERE id = $1 AND tenant_id = $2;

-- name: append_channel_message
-- A message on channel $1 with the channel's next sequence number (taking its row
-- lock, so messages are numbered in commit order without gaps); its fields $2..$13
-- (id, tenant, from, to, reply to, kind, correlation, run, task, workflow, ext, body).
WITH next AS (
    UPDATE coordination_channels
    SET message_count = message_count + 1, last_activity_at = now()
    WHERE id = $1
    RETURNING message_count, last_activity_at
)
INSERT INTO channel_messages (channel_id, seq, id, tenant_id, from_session_id,
                              to_session_id, reply_to_message_id, message_kind,
                              correlation_id, run_id, task_id, workflow_id, ext, body,
                              created_at)
SELECT $1, next.message_count, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,
       next.last_activity_at
FROM next
RETURNING *;

-- name: get_channel_message
-- One message of a tenant by its id ($1 id, $2 tenant).
SELECT * FROM channel_messages WHERE id = $1 AND tenant_id = $2;

-- name: unread_for_session
-- Channel $2 of tenant $3 (no row: none), session $1's read position in it, and up to
-- $4 messages after that position meant for the session (from others, to everyone or
-- to it), in order: a row each, or one row with a NULL seq when there is none. One
-- snapshot and no write: a message not among them has a seq above message_count.
SELECT c.root_session_id, c.run_id AS channel_run_id, c.workspace, c.name,
       c.message_count, coalesce(r.read_seq, 0) AS read_seq, m.*
FROM coordination_channels c
LEFT JOIN channel_reads r ON r.channel_id = c.id AND r.session_id = $1
LEFT JOIN LATERAL (
    SELECT * FROM channel_messages m
    WHERE m.channel_id = c.id AND m.seq > coalesce(r.read_seq, 0)
      AND m.from_session_id <> $1
      AND (m.to_session_id IS NULL OR m.to_session_id = $1)
    ORDER BY m.seq LIMIT $4
) m ON true
WHERE c.id = $2 AND c.tenant_id = $3
ORDER BY m.seq;

-- name: channel_messages_after
-- Up to $3 messages of channel $1 after seq $2, in order: a wake-up's new messages,
-- read once for every session waiting on the channel in this process.
SELECT * FROM channel_messages WHERE channel_id = $1 AND seq > $2 ORDER BY seq LIMIT $3;

-- name: move_read_positions
-- Sessions $2's read positions in channel $1 moved from $3 to $4, each only if it is
-- still at $3 (no row counts as 0); returns the sessions moved. One a receive of the
-- same session moved meanwhile stays where that one put it.
WITH wanted AS (
    SELECT * FROM unnest($2::uuid[], $3::bigint[], $4::bigint[]) AS w(session_id, seen, upto)
), moved AS (
    UPDATE channel_reads r SET read_seq = w.upto, updated_at = now()
    FROM wanted w
    WHERE r.session_id = w.session_id AND r.channel_id = $1 AND r.read_seq = w.seen
    RETURNING r.session_id
), made AS (
    INSERT INTO channel_reads (session_id, channel_id, read_seq)
    SELECT w.session_id, $1, w.upto FROM wanted w WHERE w.seen = 0
    ON CONFLICT (session_id, channel_id) DO NOTHING
    RETURNING session_id
)
SELECT session_id FROM moved UNION ALL SELECT session_id FROM made;

-- name: give_back_read_positions
-- Sessions $2's read positions in channel $1 moved back from $4 to $3, each only if
-- still at $4: what was taken for a receive that left before it was handed over.
UPDATE channel_reads r SET read_seq = w.seen, updated_at = now()
FROM unnest($2::uuid[], $3::bigint[], $4::bigint[]) AS w(session_id, seen, upto)
WHERE r.session_id = w.session_id AND r.channel_id = $1 AND r.read_seq = w.upto;

-- name: latest_received_message
-- The newest message session $1 of tenant $2 has received: at or before its read
-- position in a channel, from another session, to everyone or to it.
SELECT m.* FROM channel_reads r
JOIN channel_messages m ON m.channel_id = r.channel_id AND m.seq <= r.read_seq
WHERE r.session_id = $1 AND m.tenant_id = $2 AND m.from_session_id <> $1
  AND (m.to_session_id IS NULL OR m.to_session_id = $1)
ORDER BY m.created_at DESC, m.seq DESC
LIMIT 1;
