-- Closing a change, and its post-implementation review. See
-- cab_domain::review.

-- How a change ended, and who closed it (NULL: CAB closed it on its own,
-- as not implemented once its window had passed).
ALTER TABLE changes
    ADD COLUMN close_code  text CHECK (close_code IN ('successful', 'successful_with_issues',
                                                     'failed_rolled_back', 'failed_not_rolled_back',
                                                     'not_implemented')),
    ADD COLUMN close_notes text NOT NULL DEFAULT '' CHECK (length(close_notes) <= 4000),
    ADD COLUMN closed_by   uuid REFERENCES users (id);
CREATE INDEX changes_closed ON changes (closed_at) WHERE close_code IS NOT NULL;
-- Approved changes whose window has passed: what the not-implemented sweep
-- reads.
CREATE INDEX changes_window_passed ON changes (window_end) WHERE state = 'approved';

-- One review per change. `required` and `reasons` say why it is owed; an
-- optional review has required = false. The content is the revision being
-- written; every saved revision is kept in review_revisions.
CREATE TABLE reviews (
    change_id             uuid PRIMARY KEY REFERENCES changes (id),
    required              boolean NOT NULL,
    reasons               text[] NOT NULL DEFAULT '{}',
    due_at                timestamptz,
    content               jsonb NOT NULL,
    -- 0 until first saved.
    revision              integer NOT NULL DEFAULT 0,
    state                 text NOT NULL CHECK (state IN ('open', 'signed_off')),
    signed_off_by         uuid REFERENCES users (id),
    signed_off_at         timestamptz,
    signed_off_revision   integer,
    -- Set at the first sign-off and never cleared: a later amendment does
    -- not make the review overdue again.
    first_signed_off_at   timestamptz,
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL,
    CHECK ((state = 'signed_off') = (signed_off_at IS NOT NULL)),
    CHECK (required = (due_at IS NOT NULL))
);
CREATE INDEX reviews_overdue ON reviews (due_at) WHERE required AND first_signed_off_at IS NULL;

CREATE TABLE review_revisions (
    change_id   uuid NOT NULL REFERENCES reviews (change_id),
    revision    integer NOT NULL CHECK (revision >= 1),
    content     jsonb NOT NULL,
    author_id   uuid NOT NULL REFERENCES users (id),
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (change_id, revision)
);

-- What the review decided to do, tracked to done.
CREATE TABLE review_actions (
    id          uuid PRIMARY KEY,
    number      bigserial UNIQUE,
    change_id   uuid NOT NULL REFERENCES reviews (change_id),
    title       text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    owner_id    uuid NOT NULL REFERENCES users (id),
    due_on      date NOT NULL,
    status      text NOT NULL CHECK (status IN ('open', 'in_progress', 'done')),
    done_at     timestamptz,
    created_by  uuid NOT NULL REFERENCES users (id),
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    CHECK ((status = 'done') = (done_at IS NOT NULL))
);
CREATE INDEX review_actions_change ON review_actions (change_id, number);
CREATE INDEX review_actions_open ON review_actions (owner_id, due_on) WHERE status <> 'done';

-- The emergency retrospective becomes the review: an approved emergency
-- change owes one, due when its retrospective was.
INSERT INTO reviews (change_id, required, reasons, due_at, content, state, signed_off_at,
                     first_signed_off_at, created_at, updated_at)
SELECT id, true, ARRAY['emergency'], retrospective_due_at, '{}'::jsonb,
       CASE WHEN retrospective_done_at IS NULL THEN 'open' ELSE 'signed_off' END,
       retrospective_done_at, retrospective_done_at, retrospective_due_at, retrospective_due_at
  FROM changes WHERE retrospective_due_at IS NOT NULL;

ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_entity_kind_check;
ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_entity_kind_check
    CHECK (entity_kind IN ('change', 'comment', 'user', 'api_token', 'template', 'deployment',
                           'freeze', 'break_glass', 'observed', 'maintenance_period', 'calendar_feed',
                           'release', 'review_action'));
