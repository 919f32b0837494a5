-- The change calendar: services' maintenance periods, the conflicts CAB
-- acknowledged when it approved, and people's calendar feeds. See
-- cab_domain::calendar and cab_domain::ical.

-- Windows are looked up by period: the calendar's month and the conflict
-- check ask for the changes whose window overlaps a period. Half-open
-- ranges, so back-to-back windows do not overlap.
CREATE INDEX changes_window_range ON changes
    USING gist (tstzrange(window_start, window_end, '[)'))
    WHERE window_start IS NOT NULL AND window_end IS NOT NULL AND window_end > window_start;

CREATE INDEX deployments_period ON deployments (started_at);

-- A service's weekly maintenance period, in UTC: it opens on each of
-- `weekdays` (1 = Monday … 7 = Sunday) at `starts` and lasts `minutes`.
-- A service with periods is changed inside one of them.
CREATE TABLE maintenance_periods (
    id          uuid PRIMARY KEY,
    service     text NOT NULL CHECK (length(btrim(service)) BETWEEN 1 AND 100),
    weekdays    smallint[] NOT NULL CHECK (cardinality(weekdays) BETWEEN 1 AND 7 AND weekdays <@ '{1,2,3,4,5,6,7}'),
    starts      time NOT NULL,
    minutes     integer NOT NULL CHECK (minutes BETWEEN 15 AND 10080),
    created_by  uuid NOT NULL REFERENCES users (id),
    created_at  timestamptz NOT NULL
);
CREATE INDEX maintenance_periods_service ON maintenance_periods (service);

-- The conflicts a CAB member saw and accepted when voting to approve.
ALTER TABLE change_votes ADD COLUMN acknowledged_conflicts jsonb NOT NULL DEFAULT '[]';

-- A person's calendar subscription: a secret URL (only its SHA-256 is
-- kept) with the filters it was made with. Revoked feeds answer 404.
CREATE TABLE calendar_feeds (
    id            uuid PRIMARY KEY,
    user_id       uuid NOT NULL REFERENCES users (id),
    token_sha256  bytea NOT NULL UNIQUE CHECK (length(token_sha256) = 32),
    label         text NOT NULL CHECK (length(label) BETWEEN 1 AND 100),
    filters       jsonb NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL,
    last_used_at  timestamptz,
    revoked_at    timestamptz
);
CREATE INDEX calendar_feeds_user ON calendar_feeds (user_id, created_at);

ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_entity_kind_check;
ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_entity_kind_check
    CHECK (entity_kind IN ('change', 'comment', 'user', 'api_token', 'template', 'deployment',
                           'freeze', 'break_glass', 'observed', 'maintenance_period', 'calendar_feed'));
