-- Security impact assessments, CAB votes and the decision on a change.

CREATE TABLE change_assessments (
    id                 uuid PRIMARY KEY,
    change_id          uuid NOT NULL REFERENCES changes (id),
    -- The revision assessed; a later revision needs a fresh assessment.
    revision           integer NOT NULL,
    assessor_id        uuid NOT NULL REFERENCES users (id),
    assessor_username  text NOT NULL,
    -- The roles the assessor held when assessing.
    assessor_roles     text[] NOT NULL,
    content            jsonb NOT NULL,
    decision           text NOT NULL CHECK (decision IN ('accept', 'accept_with_conditions', 'reject')),
    assessed_level     text NOT NULL CHECK (assessed_level IN ('low', 'medium', 'high', 'critical')),
    -- Below the engineer's level (needs a justification; flagged on the change).
    lowers_risk        boolean NOT NULL,
    created_at         timestamptz NOT NULL,
    -- Set when a newer assessment replaces it.
    superseded_at      timestamptz
);
CREATE INDEX change_assessments_change ON change_assessments (change_id, created_at);

CREATE TABLE change_votes (
    id              uuid PRIMARY KEY,
    change_id       uuid NOT NULL REFERENCES changes (id),
    revision        integer NOT NULL,
    voter_id        uuid NOT NULL REFERENCES users (id),
    voter_username  text NOT NULL,
    voter_roles     text[] NOT NULL,
    choice          text NOT NULL CHECK (choice IN ('approve', 'reject', 'request_changes')),
    comment         text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL,
    -- Set when the member changes their vote on the same revision.
    superseded_at   timestamptz
);
CREATE INDEX change_votes_change ON change_votes (change_id, revision, created_at);
-- One current vote per member per revision.
CREATE UNIQUE INDEX change_votes_current ON change_votes (change_id, revision, voter_id) WHERE superseded_at IS NULL;

ALTER TABLE changes
    ADD COLUMN decided_at            timestamptz,
    -- The revision the approval applies to.
    ADD COLUMN approved_revision     integer,
    -- Why the change went back to review, shown on its page.
    ADD COLUMN review_note           text,
    -- Emergency changes: the retrospective review due after approval.
    ADD COLUMN retrospective_due_at  timestamptz,
    ADD COLUMN retrospective_done_at timestamptz;
CREATE INDEX changes_retrospective_due ON changes (retrospective_due_at) WHERE retrospective_done_at IS NULL;
