-- name: search_audit_records
-- Tenant $1's audit records matching the full-text query $2 (websearch syntax), best
-- first, at most $3: what each names, and the passage that matched.
SELECT 'audit' AS kind, seq::text AS id, action || ' ' || target_type || ' ' || target_id AS title,
       ts_headline('simple', actor || ' ' || action || ' ' || target_type || ' ' || target_id
                   || ' ' || category || ' ' || detail::text, matched,
                   'MaxFragments=1, MaxWords=24, MinWords=6, StartSel=**, StopSel=**') AS snippet,
       ts_rank(search, matched) AS rank, created_at, ticket_id, agent_id
FROM audit_records, websearch_to_tsquery('simple', $2) AS matched
WHERE tenant_id = $1 AND search @@ matched
ORDER BY rank DESC, created_at DESC
LIMIT $3;

-- name: search_agent_sessions
-- Tenant $1's agent sessions whose name, agent, model, provider or workspace match $2, best
-- first, at most $3, among its latest 20,000 (a bounded scan).
SELECT 'agent' AS kind, id::text AS id, name AS title,
       agent_name || ' · ' || provider || '/' || model || ' · ' || lane || ' · ' || state
           AS snippet,
       ts_rank(document, matched) AS rank, created_at, NULL::text AS ticket_id,
       id::text AS agent_id
FROM (
    SELECT id, name, agent_name, model, provider, lane, state, created_at,
           to_tsvector('simple', name || ' ' || agent_name || ' ' || model || ' '
                                 || provider || ' ' || lane) AS document
    FROM agent_sessions
    WHERE tenant_id = $1
    ORDER BY created_at DESC
    LIMIT 20000
) AS latest, websearch_to_tsquery('simple', $2) AS matched
WHERE document @@ matched
ORDER BY rank DESC, created_at DESC
LIMIT $3;
