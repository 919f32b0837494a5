-- Releases: changes that go out together under one plan (policy 004). See
-- cab_domain::release for the rules; the plan itself is kept as written,
-- one row per revision, and the columns below repeat what lists show and
-- what the deployment gate reads.

CREATE SEQUENCE release_number_seq;

CREATE TABLE releases (
    id                 uuid PRIMARY KEY,
    -- Shown as REL-<number>; from a sequence, so never reused.
    number             bigint NOT NULL UNIQUE DEFAULT nextval('release_number_seq'),
    state              text NOT NULL CHECK (state IN ('draft', 'in_review', 'approved', 'in_progress', 'completed', 'cancelled')),
    name               text NOT NULL CHECK (length(name) BETWEEN 1 AND 120),
    version            text NOT NULL CHECK (length(version) BETWEEN 1 AND 40),
    -- The current revision's plan (cab_domain::release::ReleasePlan).
    plan               jsonb NOT NULL,
    revision           integer NOT NULL CHECK (revision >= 1),
    created_by         uuid NOT NULL REFERENCES users (id),
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    -- The open phase (0-based) while in progress, and since when.
    current_phase      integer CHECK (current_phase >= 0),
    phase_opened_at    timestamptz,
    -- A rolled-back phase stops the phases after it.
    rolled_back_phase  integer CHECK (rolled_back_phase >= 0),
    rollback_reason    text NOT NULL DEFAULT '' CHECK (length(rollback_reason) <= 500),
    started_at         timestamptz,
    closed_at          timestamptz,
    -- The first deployment milestone, for the list's order and the calendar.
    deploy_at          timestamptz NOT NULL,
    -- The quorum policy the go/no-go is decided under, fixed when the plan
    -- was submitted (as a change's is).
    quorum_policy      jsonb,
    CHECK ((current_phase IS NULL) = (phase_opened_at IS NULL))
);
CREATE INDEX releases_state ON releases (state, deploy_at);
CREATE INDEX releases_deploy_at ON releases (deploy_at);

-- Every revision of the plan, with its scope (change numbers as people
-- read them) and what differs from the one before.
CREATE TABLE release_revisions (
    release_id  uuid NOT NULL REFERENCES releases (id),
    number      integer NOT NULL CHECK (number > 0),
    plan        jsonb NOT NULL,
    scope       text[] NOT NULL,
    -- [{field, before, after}]
    diff        jsonb NOT NULL,
    -- Why: the reason given for a scope change, or a summary.
    note        text NOT NULL DEFAULT '' CHECK (length(note) <= 1000),
    created_at  timestamptz NOT NULL,
    created_by  uuid NOT NULL REFERENCES users (id),
    PRIMARY KEY (release_id, number)
);
CREATE INDEX release_revisions_author ON release_revisions (created_by);

-- The changes in a release: added and removed, each with a reason. A
-- change is in at most one release at a time.
CREATE TABLE release_scope (
    release_id      uuid NOT NULL REFERENCES releases (id),
    change_id       uuid NOT NULL REFERENCES changes (id),
    added_by        uuid NOT NULL REFERENCES users (id),
    added_at        timestamptz NOT NULL,
    added_reason    text NOT NULL CHECK (length(added_reason) BETWEEN 1 AND 500),
    removed_by      uuid REFERENCES users (id),
    removed_at      timestamptz,
    removed_reason  text CHECK (length(removed_reason) BETWEEN 1 AND 500),
    PRIMARY KEY (release_id, change_id, added_at)
);
CREATE UNIQUE INDEX release_scope_one_release ON release_scope (change_id) WHERE removed_at IS NULL;

-- CAB's go/no-go votes, each on one revision of the plan; a member's new
-- vote supersedes their earlier one on the same revision.
CREATE TABLE release_votes (
    id              uuid PRIMARY KEY,
    release_id      uuid NOT NULL REFERENCES releases (id),
    revision        integer NOT NULL,
    voter_id        uuid NOT NULL REFERENCES users (id),
    voter_username  text NOT NULL,
    voter_roles     text[] NOT NULL,
    choice          text NOT NULL CHECK (choice IN ('approve', 'reject', 'request_changes')),
    comment         text NOT NULL DEFAULT '' CHECK (length(comment) <= 10000),
    created_at      timestamptz NOT NULL,
    superseded_at   timestamptz
);
CREATE INDEX release_votes_release ON release_votes (release_id, created_at);
CREATE UNIQUE INDEX release_votes_current ON release_votes (release_id, revision, voter_id) WHERE superseded_at IS NULL;

-- What happened to each phase: opened, rolled back.
CREATE TABLE release_phase_events (
    release_id  uuid NOT NULL REFERENCES releases (id),
    phase       integer NOT NULL CHECK (phase >= 0),
    kind        text NOT NULL CHECK (kind IN ('opened', 'rolled_back')),
    at          timestamptz NOT NULL,
    by_user     uuid NOT NULL REFERENCES users (id),
    reason      text NOT NULL DEFAULT '' CHECK (length(reason) <= 500)
);
CREATE INDEX release_phase_events_release ON release_phase_events (release_id, at);

ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_entity_kind_check;
ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_entity_kind_check
    CHECK (entity_kind IN ('change', 'comment', 'user', 'api_token', 'template', 'deployment',
                           'freeze', 'break_glass', 'observed', 'maintenance_period', 'calendar_feed',
                           'release'));
