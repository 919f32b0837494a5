-- Two-person rule for powerful roles: a decision role (security reviewer,
-- CAB member, release manager) or the administrator role, granted through
-- the app, is first requested by one administrator and holds only once a
-- second administrator confirms it. `roles` are the roles the request adds.
CREATE TABLE role_grants (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id),
    roles text[] NOT NULL CHECK (cardinality(roles) > 0),
    requested_by uuid NOT NULL REFERENCES users (id),
    requested_at timestamptz NOT NULL,
    confirmed_by uuid REFERENCES users (id),
    confirmed_at timestamptz,
    -- Empty when the request was replaced by a later one or settled from
    -- the command line.
    cancelled_by uuid REFERENCES users (id),
    cancelled_at timestamptz,
    CHECK ((confirmed_by IS NULL) = (confirmed_at IS NULL)),
    CHECK (confirmed_at IS NULL OR cancelled_at IS NULL),
    CHECK (cancelled_by IS NULL OR cancelled_at IS NOT NULL),
    -- The application checks these first; the table refuses them anyway.
    CHECK (confirmed_by IS NULL OR confirmed_by <> requested_by),
    CHECK (confirmed_by IS NULL OR confirmed_by <> user_id),
    CHECK (requested_by <> user_id)
);

-- One open request per account: a new request replaces the open one.
CREATE UNIQUE INDEX role_grants_one_open ON role_grants (user_id)
    WHERE confirmed_at IS NULL AND cancelled_at IS NULL;
CREATE INDEX role_grants_requested_at ON role_grants (requested_at DESC);
