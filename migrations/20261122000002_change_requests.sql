-- Change requests, their contributors, revisions and comments.

CREATE SEQUENCE change_number_seq;

CREATE TABLE changes (
    id               uuid PRIMARY KEY,
    -- Shown as CHG-<number>; from a sequence, so never reused.
    number           bigint NOT NULL UNIQUE DEFAULT nextval('change_number_seq'),
    state            text NOT NULL,
    author_id        uuid NOT NULL REFERENCES users (id),
    -- Everything people write (cab_domain::change::ChangeContent); the
    -- columns below repeat what lists filter and sort on.
    content          jsonb NOT NULL,
    title            text NOT NULL,
    description      text NOT NULL,
    change_type      text NOT NULL,
    category         text NOT NULL,
    priority         text NOT NULL,
    services         text[] NOT NULL,
    environments     text[] NOT NULL,
    window_start     timestamptz,
    window_end       timestamptz,
    risk_level       text NOT NULL CHECK (risk_level IN ('low', 'medium', 'high', 'critical')),
    risk_rank        smallint NOT NULL,
    risk_reasons     text[] NOT NULL,
    risk_version     integer NOT NULL,
    -- 0 while a draft; 1 at submission; each later edit adds one.
    revision         integer NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    submitted_at     timestamptz,
    closed_at        timestamptz,
    search           tsvector GENERATED ALWAYS AS (
                         setweight(to_tsvector('english', title), 'A') ||
                         setweight(to_tsvector('english', description), 'B')) STORED
);
ALTER SEQUENCE change_number_seq OWNED BY changes.number;
CREATE INDEX changes_search ON changes USING gin (search);
CREATE INDEX changes_state ON changes (state, number);
CREATE INDEX changes_author ON changes (author_id, number);
CREATE INDEX changes_services ON changes USING gin (services);
CREATE INDEX changes_updated ON changes (updated_at, number);
CREATE INDEX changes_window ON changes ((coalesce(window_start, 'infinity'::timestamptz)), number);
CREATE INDEX changes_risk ON changes (risk_rank, number);

CREATE TABLE change_contributors (
    change_id  uuid NOT NULL REFERENCES changes (id),
    user_id    uuid NOT NULL REFERENCES users (id),
    PRIMARY KEY (change_id, user_id)
);
CREATE INDEX change_contributors_user ON change_contributors (user_id);

CREATE TABLE change_revisions (
    change_id   uuid NOT NULL REFERENCES changes (id),
    number      integer NOT NULL CHECK (number > 0),
    content     jsonb NOT NULL,
    -- Fields that differ from the revision before: [{field, before, after}].
    diff        jsonb NOT NULL,
    risk_level  text NOT NULL,
    created_at  timestamptz NOT NULL,
    created_by  uuid NOT NULL REFERENCES users (id),
    PRIMARY KEY (change_id, number)
);

CREATE TABLE change_comments (
    id          uuid PRIMARY KEY,
    change_id   uuid NOT NULL REFERENCES changes (id),
    author_id   uuid NOT NULL REFERENCES users (id),
    body        text NOT NULL CHECK (length(body) BETWEEN 1 AND 10000),
    created_at  timestamptz NOT NULL
);
CREATE INDEX change_comments_change ON change_comments (change_id, created_at);

-- Service names seen so far, for autocompletion.
CREATE TABLE services (
    name        text PRIMARY KEY,
    first_seen  timestamptz NOT NULL DEFAULT now()
);
