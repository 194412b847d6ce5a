-- name: open_agent_sessions
-- Each claimed run's session and coordination channel, in the claim's transaction, a
-- batch in one statement. Per claim: task ($1), run ($2), a new session id ($3), the
-- credential's hash ($4), the claim token's hash ($5), a new channel id ($6), the
-- lane's permission policy ($7) and spawn budget ($8) for a new session; $9 the message
-- kinds of a run's channel. A task's session is made at its first claim and bound to
-- every later one (a spawned session, made before, at its first); a session stopped on
-- purpose stays stopped. A run's channel is made at its first claim and kept by a
-- re-claim. Returns per claim the session (session) and its run's channel (channel).
WITH given AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[],
                         $6::uuid[], $7::jsonb[], $8::jsonb[])
        AS g(task_id, run_id, session_id, credential_hash, token_hash, channel_id,
             policy, budget)
), bound AS (
    INSERT INTO agent_sessions AS s (
        id, tenant_id, task_id, run_id, name, type, state, agent_name, model, provider,
        lane, root_session_id, spawn_budget, permission_policy, credential_hash,
        claim_token_hash)
    SELECT g.session_id, t.tenant_id, t.id, g.run_id,
           coalesce(t.agent_type, 'workbench-' || t.lane) || ' ' || left(t.id::text, 8),
           'task', 'active', coalesce(t.agent_type, 'workbench-' || t.lane),
           coalesce(t.run_options->>'model', 'default'), t.model_provider, t.lane,
           g.session_id, g.budget, g.policy, g.credential_hash, g.token_hash
    FROM given g JOIN tasks t ON t.id = g.task_id
    ORDER BY t.id
    ON CONFLICT (task_id) DO UPDATE
    SET run_id = excluded.run_id, credential_hash = excluded.credential_hash,
        claim_token_hash = excluded.claim_token_hash,
        state = CASE WHEN s.state IN ('stopping', 'stopped') THEN s.state ELSE 'active' END,
        updated_at = now()
    RETURNING s.*
), made AS (
    INSERT INTO coordination_channels (
        id, tenant_id, workspace, name, display_name, purpose, allowed_message_kinds,
        run_id, task_id, root_session_id)
    SELECT g.channel_id, bound.tenant_id, bound.lane, 'coord-run-' || g.run_id,
           'Run ' || left(g.run_id::text, 8) || ' of ' || bound.agent_name,
           'Coordination of this task run between its session and its peers.',
           $9::text[], g.run_id, g.task_id, bound.root_session_id
    FROM given g JOIN bound ON bound.task_id = g.task_id
    ON CONFLICT (run_id) DO NOTHING
    RETURNING *
)
SELECT to_jsonb(bound) AS session,
       coalesce(to_jsonb(made), to_jsonb(kept)) AS channel
FROM bound
LEFT JOIN made ON made.run_id = bound.run_id
LEFT JOIN coordination_channels kept ON kept.run_id = bound.run_id;

-- name: session_by_credential
-- The session a credential's hash ($1) names, with whether its claim still holds the
-- run (held: running under the claim the credential was issued with, lease not
-- passed), its task's status, and its run's channel.
SELECT s.*, t.status AS task_status, r.status AS run_status, r.attempt,
       r.lease_until, c.id AS channel_id,
       coalesce(r.status = 'running' AND r.claim_token_hash = s.claim_token_hash
                AND r.lease_until > now(), false) AS held
FROM agent_sessions s
JOIN tasks t ON t.id = s.task_id
LEFT JOIN runs r ON r.id = s.run_id
LEFT JOIN coordination_channels c ON c.run_id = s.run_id
WHERE s.credential_hash = $1;

-- name: run_session_channel
-- The session of a run's task and the run's channel ($1 run, $2 tenant), for the worker
-- protocol's lease records; no row for a run never claimed.
SELECT s.id AS session_id, to_jsonb(c) AS channel
FROM runs r
JOIN agent_sessions s ON s.task_id = r.task_id
LEFT JOIN coordination_channels c ON c.run_id = r.id
WHERE r.id = $1 AND r.tenant_id = $2;
