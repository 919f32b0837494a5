-- Break-glass: a production deployment outside the change's window, during
-- a freeze or before approval, asked for by a release manager with a reason
-- and an incident, and confirmed by a second person within 30 minutes. A
-- confirmed one holds for at most 60 minutes and authorizes one deployment.
CREATE TABLE break_glass (
    id              uuid PRIMARY KEY,
    number          bigserial UNIQUE,
    change_id       uuid NOT NULL REFERENCES changes (id),
    environment     text NOT NULL REFERENCES environments (key) ON UPDATE CASCADE,
    -- What the two people agreed to: this revision of the change and this
    -- artifact; an edit or another artifact needs another break-glass.
    revision        integer NOT NULL,
    artifact_digest text NOT NULL CHECK (artifact_digest ~ '^sha256:[0-9a-f]{64}$'),
    reason          text NOT NULL CHECK (length(reason) BETWEEN 30 AND 2000),
    incident        text NOT NULL CHECK (length(incident) BETWEEN 1 AND 200),
    requested_by    uuid NOT NULL REFERENCES users (id),
    requested_at    timestamptz NOT NULL,
    confirmed_by    uuid REFERENCES users (id),
    confirmed_at    timestamptz,
    -- Until when it may still be confirmed, then until when it may be used.
    expires_at      timestamptz NOT NULL,
    deployment_id   uuid UNIQUE REFERENCES deployments (id),
    CHECK (confirmed_by IS NULL OR confirmed_by <> requested_by),
    CHECK ((confirmed_by IS NULL) = (confirmed_at IS NULL))
);
CREATE INDEX break_glass_change ON break_glass (change_id);
CREATE INDEX break_glass_recent ON break_glass (number);

ALTER TABLE deployments ADD COLUMN break_glass_id uuid UNIQUE REFERENCES break_glass (id);

-- What a runtime or a webhook saw running. One not covered by a started or
-- succeeded deployment of the same digest is a finding when the
-- environment is a production one.
CREATE TABLE observed_deployments (
    id              uuid PRIMARY KEY,
    number          bigserial UNIQUE,
    environment     text NOT NULL REFERENCES environments (key) ON UPDATE CASCADE,
    service         text NOT NULL CHECK (length(service) BETWEEN 1 AND 100),
    artifact_digest text NOT NULL CHECK (artifact_digest ~ '^sha256:[0-9a-f]{64}$'),
    observed_at     timestamptz NOT NULL,
    reported_by     uuid NOT NULL REFERENCES users (id),
    reported_at     timestamptz NOT NULL,
    -- The deployment that covers it, if one does.
    deployment_id   uuid REFERENCES deployments (id),
    finding         boolean NOT NULL,
    resolved_at     timestamptz,
    resolved_by     uuid REFERENCES users (id),
    resolution      text NOT NULL DEFAULT '' CHECK (length(resolution) <= 2000)
);
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_entity_kind_check;
ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_entity_kind_check
    CHECK (entity_kind IN ('change', 'comment', 'user', 'api_token', 'template', 'deployment',
                           'freeze', 'break_glass', 'observed'));

-- A change's timeline shows its deployments' and break-glass requests'
-- events.
CREATE INDEX audit_events_of_change ON audit_events ((payload->>'change_id'))
    WHERE entity_type IN ('deployment', 'break_glass');

CREATE INDEX observed_findings ON observed_deployments (number) WHERE finding AND resolved_at IS NULL;
CREATE INDEX observed_recent ON observed_deployments (number);
