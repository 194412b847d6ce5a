-- name: search_audit_records
-- Tenant $1's audit records matching the full-text query $2 (websearch syntax), best
-- first, at most $3: what each names, and the passage that matched.
SELECT 'audit' AS kind, seq::text AS id, action || ' ' || target_type || ' ' || target_id AS title,
       ts_headline('simple', actor || ' ' || action || ' ' || target_type || ' ' || target_id
                   || ' ' || category || ' ' || detail::text, matched,
                   'MaxWords=24, MinWords=6, StartSel=**, StopSel=**') AS snippet,
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

-- name: search_tickets
-- Tenant $1's tickets whose title or description match $2, best first, at most $3,
-- among its latest 20,000 (a bounded scan).
SELECT 'ticket' AS kind, id::text AS id, title,
       ts_headline('simple', title || ' ' || description, matched,
                   'MaxWords=24, MinWords=6, StartSel=**, StopSel=**')
           AS snippet,
       ts_rank(document, matched) AS rank, created_at, id::text AS ticket_id,
       agent_id::text AS agent_id
FROM (
    SELECT id, title, description, agent_id, created_at,
           to_tsvector('simple', title || ' ' || description) AS document
    FROM tickets
    WHERE tenant_id = $1
    ORDER BY created_at DESC
    LIMIT 20000
) AS latest, websearch_to_tsquery('simple', $2) AS matched
WHERE document @@ matched
ORDER BY rank DESC, created_at DESC
LIMIT $3;

-- name: search_ticket_notes
-- Tenant $1's ticket notes of a visibility in $4 whose text matches $2, best first, at
-- most $3, among its latest 20,000 (a bounded scan).
SELECT 'note' AS kind, id::text AS id, kind || ' by ' || author AS title,
       ts_headline('simple', body, matched,
                   'MaxWords=24, MinWords=6, StartSel=**, StopSel=**')
           AS snippet,
       ts_rank(document, matched) AS rank, created_at, ticket_id::text AS ticket_id,
       data->>'agent_id' AS agent_id
FROM (
    SELECT id, kind, author, body, data, ticket_id, created_at,
           to_tsvector('simple', body) AS document
    FROM ticket_notes
    WHERE tenant_id = $1 AND visibility = ANY ($4::text[])
    ORDER BY created_at DESC
    LIMIT 20000
) AS latest, websearch_to_tsquery('simple', $2) AS matched
WHERE document @@ matched
ORDER BY rank DESC, created_at DESC
LIMIT $3;

-- name: search_change_requests
-- Tenant $1's change requests whose action, target or reason match $2, best first, at
-- most $3, among its latest 20,000 (a bounded scan). The command is not searched.
SELECT 'change' AS kind, id::text AS id, action || ' ' || target AS title,
       ts_headline('simple', action || ' ' || target || ' ' || reason, matched,
                   'MaxWords=24, MinWords=6, StartSel=**, StopSel=**') AS snippet,
       ts_rank(document, matched) AS rank, created_at, ticket_id::text AS ticket_id,
       agent_id::text AS agent_id
FROM (
    SELECT id, action, target, reason, ticket_id, agent_id, created_at,
           to_tsvector('simple', action || ' ' || target || ' ' || reason) AS document
    FROM change_requests
    WHERE tenant_id = $1
    ORDER BY created_at DESC, id DESC
    LIMIT 20000
) AS latest, websearch_to_tsquery('simple', $2) AS matched
WHERE document @@ matched
ORDER BY rank DESC, created_at DESC
LIMIT $3;
