-- name: task_runs_newest_first
-- Every run of task $1 of tenant $2, the latest attempt first.
SELECT * FROM runs WHERE task_id = $1 AND tenant_id = $2 ORDER BY attempt DESC;

-- name: latest_traces
-- The last $3 events of task $1 of tenant $2, newest first.
SELECT * FROM trace_events
WHERE tenant_id = $2 AND task_id = $1
ORDER BY seq DESC
LIMIT $3;

-- name: inbox_messages
-- The newest $3 messages session $1 has not read on channels $2 (from others, to
-- everyone or to it, after its read position), newest first.
SELECT m.*
FROM unnest($2::uuid[]) AS v(channel_id)
JOIN channel_messages m ON m.channel_id = v.channel_id
LEFT JOIN channel_reads r ON r.session_id = $1 AND r.channel_id = v.channel_id
WHERE m.seq > coalesce(r.read_seq, 0) AND m.from_session_id <> $1
  AND (m.to_session_id IS NULL OR m.to_session_id = $1)
ORDER BY m.created_at DESC, m.id DESC
LIMIT $3;

-- name: peer_sessions
-- The other sessions of tenant $1 whose claim holds their run now, in session $2's
-- tree (root $3) or in its workspace $4 with one of its named channels (names $5 and
-- ids $6, sorted by name), each with the channel it shares with $2: its run channel in
-- the tree, else the first of those named channels it has. Sorted by that channel,
-- then session id, the first $7: only they are decoded and sent, however many peers
-- there are. From the running runs (the runs_running index).
SELECT s.id, s.name, s.agent_name, s.permission_policy->'tools' AS tools, shared.channel_id
FROM runs r
JOIN agent_sessions s ON s.run_id = r.id AND s.claim_token_hash = r.claim_token_hash
LEFT JOIN coordination_channels c ON c.run_id = r.id
CROSS JOIN LATERAL (
    SELECT CASE WHEN s.root_session_id = $3 THEN c.id ELSE (
        SELECT n.id FROM unnest($5::text[], $6::uuid[]) WITH ORDINALITY AS n(name, id, position)
        WHERE (s.permission_policy->'network_channels') ? n.name
        ORDER BY n.position LIMIT 1) END AS channel_id
) shared
WHERE r.status = 'running' AND r.lease_until > now() AND r.tenant_id = $1
  AND s.id <> $2
  AND (s.root_session_id = $3
       OR (s.lane = $4 AND (s.permission_policy->'network_channels') ?| $5::text[]))
ORDER BY shared.channel_id, s.id
LIMIT $7;
