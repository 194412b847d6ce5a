-- name: insert_ticket
-- Records a new ticket.
INSERT INTO tickets (id, tenant_id, title, description, ticket_class, status, priority,
                     created_by, assignee_team, owning_group, parent_ticket_id,
                     it_request_number, provider_ref, details)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
RETURNING *;

-- name: get_ticket
-- One ticket of a tenant.
SELECT * FROM tickets WHERE tenant_id = $1 AND id = $2;

-- name: list_tickets
-- A tenant's tickets newest first, each filter applied when given ($6: agent only).
SELECT * FROM tickets
WHERE tenant_id = $1
  AND ($2::text IS NULL OR status = $2)
  AND ($3::smallint IS NULL OR priority = $3)
  AND ($4::text IS NULL OR assignee = $4)
  AND (NOT $5::boolean OR agent_id IS NOT NULL)
ORDER BY created_at DESC, id DESC
LIMIT $6 OFFSET $7;

-- name: set_ticket_status
-- Moves a ticket from the status it was read in ($4) to $3, unless it is terminal ($5);
-- the status it leaves is kept to restore (a repeated status keeps the one before).
UPDATE tickets
SET status = $3,
    previous_status = CASE WHEN status = $3 THEN previous_status ELSE status END,
    updated_at = now()
WHERE tenant_id = $1 AND id = $2 AND status = $4 AND NOT status = ANY($5::text[])
RETURNING *;

-- name: restore_ticket_status
-- A requester's answer: a ticket awaiting it goes back to the status it had before.
UPDATE tickets
SET status = previous_status, previous_status = status, updated_at = now()
WHERE tenant_id = $1 AND id = $2 AND status = 'awaiting_user_response'
  AND previous_status IS NOT NULL
RETURNING *;

-- name: set_ticket_provider_sync
-- What the ticket's provider answered to the latest push or close.
UPDATE tickets SET provider_sync_status = $3, external_url = COALESCE($4, external_url)
WHERE tenant_id = $1 AND id = $2
RETURNING *;

-- name: assign_ticket
-- Sets each assignment field given (NULL keeps the current one) on a ticket not closed.
UPDATE tickets
SET assignee_team = COALESCE($3, assignee_team),
    owning_group = COALESCE($4, owning_group),
    assignee = COALESCE($5, assignee),
    priority = COALESCE($6, priority),
    updated_at = now()
WHERE tenant_id = $1 AND id = $2 AND NOT status = ANY($7::text[])
RETURNING *;

-- name: insert_ticket_note
-- Appends a note to a ticket's timeline.
INSERT INTO ticket_notes (id, tenant_id, ticket_id, kind, body, author, source,
                          visibility, data)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING *;

-- name: list_ticket_notes
-- A ticket's notes oldest first, the latest $3 of them.
SELECT * FROM (
    SELECT * FROM ticket_notes WHERE tenant_id = $1 AND ticket_id = $2
    ORDER BY created_at DESC, id DESC LIMIT $3
) latest
ORDER BY created_at, id;

-- name: insert_ticket_attachment
-- Records an attachment's metadata (its content is stored elsewhere).
INSERT INTO ticket_attachments (id, tenant_id, ticket_id, filename, content_type,
                                size_bytes, storage_ref, sha256, uploaded_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING *;

-- name: list_ticket_attachments
-- A ticket's attachments, oldest first.
SELECT * FROM ticket_attachments WHERE tenant_id = $1 AND ticket_id = $2
ORDER BY created_at, id;

-- name: link_ticket_task
-- Records that a task is worked for a ticket (once).
INSERT INTO ticket_tasks (ticket_id, task_id, tenant_id) VALUES ($1, $2, $3)
ON CONFLICT DO NOTHING;

-- name: ticket_recent_tasks
-- The latest $3 tasks worked for a ticket.
SELECT t.id, t.title, t.lane, t.status, t.attempt, t.terminal_reason, t.created_at,
       t.updated_at
FROM ticket_tasks tt JOIN tasks t ON t.id = tt.task_id
WHERE tt.tenant_id = $1 AND tt.ticket_id = $2
ORDER BY tt.created_at DESC LIMIT $3;

-- name: related_tickets
-- The ticket's parent and its children (access requests raised for it).
SELECT * FROM tickets
WHERE tenant_id = $1 AND id <> $2
  AND (parent_ticket_id = $2 OR id = (SELECT parent_ticket_id FROM tickets
                                      WHERE tenant_id = $1 AND id = $2))
ORDER BY created_at, id;

-- name: ticket_for_it_request
-- The ticket an IT request was registered as.
SELECT * FROM tickets WHERE tenant_id = $1 AND it_request_number = $2;

-- name: ticket_current_agent
-- The agent working a ticket now and the status of its current task.
SELECT tk.agent_id, tk.agent_task_id AS task_id, t.status AS task_status
FROM tickets tk LEFT JOIN tasks t ON t.id = tk.agent_task_id
WHERE tk.tenant_id = $1 AND tk.id = $2;

-- name: set_ticket_agent
-- The agent now working a ticket and its current task (both NULL: none works it).
UPDATE tickets SET agent_id = $3, agent_task_id = $4, updated_at = now()
WHERE tenant_id = $1 AND id = $2
RETURNING *;
