-- Deployments: the environments a change is promoted through, freezes, the
-- records of what the gate authorized and what became of it, and the keys
-- that sign its authorizations. See cab_domain::deployment.

-- Environments are data, ordered by rank. `colour` is the one colour the
-- environment has on every page.
CREATE TABLE environments (
    key              text PRIMARY KEY CHECK (key ~ '^[a-z0-9-]{1,20}$'),
    label            text NOT NULL CHECK (length(label) BETWEEN 1 AND 40),
    rank             integer NOT NULL UNIQUE,
    production       boolean NOT NULL,
    needs_approval   boolean NOT NULL,
    needs_promotion  boolean NOT NULL,
    soak_minutes     integer NOT NULL DEFAULT 0 CHECK (soak_minutes BETWEEN 0 AND 43200),
    colour           text NOT NULL CHECK (colour ~ '^#[0-9a-f]{6}$'),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
INSERT INTO environments (key, label, rank, production, needs_approval, needs_promotion, soak_minutes, colour) VALUES
    ('dev',   'DEV',   1, false, false, false, 0,  '#1d4ed8'),
    ('test',  'TEST',  2, false, false, true,  0,  '#047857'),
    ('stage', 'STAGE', 3, false, false, true,  0,  '#92400e'),
    ('prod',  'PROD',  4, true,  true,  true,  0,  '#b91c1c');

-- Which environments a pipeline's service account may deploy to. A service
-- account with no row here deploys nowhere; people are not limited here
-- (the gate's duties decide for them).
CREATE TABLE account_environments (
    user_id      uuid NOT NULL REFERENCES users (id),
    environment  text NOT NULL REFERENCES environments (key) ON UPDATE CASCADE ON DELETE CASCADE,
    PRIMARY KEY (user_id, environment)
);

-- Periods in which nothing is deployed: to all services, or the ones named;
-- in all environments, or the ones named.
CREATE TABLE freezes (
    id            uuid PRIMARY KEY,
    starts_at     timestamptz NOT NULL,
    ends_at       timestamptz NOT NULL,
    reason        text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    environments  text[] NOT NULL DEFAULT '{}',
    services      text[] NOT NULL DEFAULT '{}',
    created_by    uuid NOT NULL REFERENCES users (id),
    created_at    timestamptz NOT NULL,
    -- Lifted early: it ends when it was lifted.
    lifted_at     timestamptz,
    lifted_by     uuid REFERENCES users (id),
    CHECK (ends_at > starts_at)
);
CREATE INDEX freezes_period ON freezes (ends_at, starts_at);

CREATE TABLE deployments (
    id                 uuid PRIMARY KEY,
    -- Shown as DEP-<number>.
    number             bigserial NOT NULL UNIQUE,
    change_id          uuid NOT NULL REFERENCES changes (id),
    revision           integer NOT NULL CHECK (revision >= 0),
    environment        text NOT NULL REFERENCES environments (key) ON UPDATE CASCADE,
    artifact_name      text NOT NULL CHECK (length(artifact_name) BETWEEN 1 AND 200),
    artifact_version   text NOT NULL CHECK (length(artifact_version) <= 100),
    artifact_digest    text NOT NULL CHECK (artifact_digest ~ '^sha256:[0-9a-f]{64}$'),
    services           text[] NOT NULL,
    -- The person it is deployed for, and the account that runs it (the same
    -- person, or a pipeline's service account).
    initiator_id       uuid NOT NULL REFERENCES users (id),
    executor_id        uuid NOT NULL REFERENCES users (id),
    pipeline_provider  text NOT NULL DEFAULT '' CHECK (length(pipeline_provider) <= 40),
    pipeline_run_id    text NOT NULL DEFAULT '' CHECK (length(pipeline_run_id) <= 200),
    pipeline_url       text NOT NULL DEFAULT '' CHECK (length(pipeline_url) <= 2000),
    state              text NOT NULL CHECK (state IN ('authorized', 'started', 'succeeded', 'failed', 'rolled_back', 'expired', 'aborted')),
    authorized_at      timestamptz NOT NULL,
    expires_at         timestamptz NOT NULL,
    -- The signed authorization's id (`jti`); set to used when the
    -- deployment starts, so it starts once.
    token_id           uuid NOT NULL UNIQUE,
    token_used_at      timestamptz,
    started_at         timestamptz,
    finished_at        timestamptz,
    rolled_back_at     timestamptz,
    note               text NOT NULL DEFAULT '' CHECK (length(note) <= 2000),
    updated_at         timestamptz NOT NULL
);
-- One deployment of a change to an environment at a time: of two gate
-- requests racing, on one replica or two, exactly one is authorized.
CREATE UNIQUE INDEX deployments_one_under_way
    ON deployments (change_id, environment) WHERE state IN ('authorized', 'started');
CREATE INDEX deployments_change ON deployments (change_id, number);
CREATE INDEX deployments_promotion ON deployments (artifact_digest, environment, finished_at) WHERE state = 'succeeded';
CREATE INDEX deployments_recent ON deployments (number);

-- The keys that sign deployment authorizations (Ed25519). The private half
-- is sealed with a key derived from the server's secret key; the public
-- half stays published after the key is retired, so tokens it signed can
-- still be checked until they expire.
CREATE TABLE signing_keys (
    kid             text PRIMARY KEY,
    public_key      bytea NOT NULL CHECK (octet_length(public_key) = 32),
    sealed_private  bytea NOT NULL,
    created_at      timestamptz NOT NULL,
    retired_at      timestamptz
);
-- At most one key signs at a time.
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys ((true)) WHERE retired_at IS NULL;

ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_entity_kind_check;
ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_entity_kind_check
    CHECK (entity_kind IN ('change', 'comment', 'user', 'api_token', 'template', 'deployment'));
