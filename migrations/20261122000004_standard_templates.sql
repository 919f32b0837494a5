-- Standard changes: pre-approved templates for routine, low-risk work.

CREATE TABLE standard_templates (
    id            uuid PRIMARY KEY,
    name          text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
    -- The fixed part of every change made from it (cab_domain::change::ChangeContent).
    content       jsonb NOT NULL,
    risk_level    text NOT NULL,
    state         text NOT NULL CHECK (state IN ('proposed', 'approved', 'retired')),
    proposed_by   uuid NOT NULL REFERENCES users (id),
    created_at    timestamptz NOT NULL,
    approved_at   timestamptz,
    retired_at    timestamptz
);

CREATE TABLE template_votes (
    id              uuid PRIMARY KEY,
    template_id     uuid NOT NULL REFERENCES standard_templates (id),
    voter_id        uuid NOT NULL REFERENCES users (id),
    voter_username  text NOT NULL,
    voter_roles     text[] NOT NULL,
    choice          text NOT NULL CHECK (choice IN ('approve', 'reject', 'request_changes')),
    comment         text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL,
    superseded_at   timestamptz
);
CREATE UNIQUE INDEX template_votes_current ON template_votes (template_id, voter_id) WHERE superseded_at IS NULL;

-- The approved template a standard change was made from.
ALTER TABLE changes ADD COLUMN template_id uuid REFERENCES standard_templates (id);
