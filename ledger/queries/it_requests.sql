-- name: insert_it_request
-- Registers an IT request; nothing is returned when the number is already taken.
INSERT INTO it_requests (tenant_id, request_number, title, description, requester,
                         source_system, details, created_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (tenant_id, request_number) DO NOTHING
RETURNING *;

-- name: get_it_request
-- One IT request of a tenant.
SELECT * FROM it_requests WHERE tenant_id = $1 AND request_number = $2;
