-- Foundation: accounts, sessions, API tokens, login throttling and the audit trail.

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    username      text NOT NULL,
    display_name  text NOT NULL DEFAULT '',
    -- NULL for service accounts: they authenticate with API tokens only.
    password_hash text,
    is_service    boolean NOT NULL DEFAULT false,
    roles         text[] NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    disabled_at   timestamptz,
    CONSTRAINT users_username_format CHECK (username ~ '^[a-z0-9][a-z0-9._-]{1,63}$'),
    CONSTRAINT users_roles_known CHECK (roles <@ ARRAY['engineer','security_reviewer','cab_member','release_manager','auditor','admin']::text[]),
    CONSTRAINT users_service_has_no_password CHECK (NOT is_service OR password_hash IS NULL)
);
CREATE UNIQUE INDEX users_username_key ON users (username);

-- A browser sign-in or an API access token. The signed token a client holds
-- only names a row here, so ending a session takes effect on the next request.
CREATE TABLE sessions (
    id            uuid PRIMARY KEY,
    user_id       uuid NOT NULL REFERENCES users (id),
    kind          text NOT NULL CHECK (kind IN ('web', 'api')),
    created_at    timestamptz NOT NULL,
    last_seen_at  timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    ended_at      timestamptz,
    end_reason    text
);
CREATE INDEX sessions_user_open ON sessions (user_id) WHERE ended_at IS NULL;

-- Long-lived tokens for service accounts. Only a SHA-256 of the token is kept.
CREATE TABLE api_tokens (
    id            uuid PRIMARY KEY,
    user_id       uuid NOT NULL REFERENCES users (id),
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    token_hash    bytea NOT NULL UNIQUE,
    -- The first characters of the token, to recognise it in lists.
    token_prefix  text NOT NULL,
    created_at    timestamptz NOT NULL,
    created_by    uuid REFERENCES users (id),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

-- Failed password checks, for throttling. A successful sign-in clears the
-- account's rows; rows older than a day are pruned as new ones arrive.
CREATE TABLE login_failures (
    id           bigserial PRIMARY KEY,
    username     text NOT NULL,
    client_addr  text NOT NULL,
    failed_at    timestamptz NOT NULL
);
CREATE INDEX login_failures_username ON login_failures (username, failed_at);
CREATE INDEX login_failures_addr ON login_failures (client_addr, failed_at);

-- The audit trail. Append-only, hash-chained; see cab_domain::audit.
CREATE TABLE audit_events (
    seq             bigint PRIMARY KEY CHECK (seq > 0),
    occurred_at     timestamptz NOT NULL,
    actor_id        uuid,
    actor_username  text,
    actor_roles     text[] NOT NULL,
    action          text NOT NULL,
    entity_type     text NOT NULL,
    entity_id       text,
    payload         jsonb NOT NULL,
    request_id      text,
    client_addr     text,
    prev_hash       bytea NOT NULL,
    hash            bytea NOT NULL,
    canonical       bytea NOT NULL
);
CREATE INDEX audit_events_entity ON audit_events (entity_type, entity_id, seq);

-- The recorded head of the chain: one row, moved forward by each append. It
-- serialises writers (so sequence numbers have no gaps) and lets the verifier
-- notice a truncated tail.
CREATE TABLE audit_head (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    seq        bigint NOT NULL,
    hash       bytea NOT NULL
);
INSERT INTO audit_head (singleton, seq, hash) VALUES (true, 0, '\x0000000000000000000000000000000000000000000000000000000000000000');

CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit trail is append-only: % on % is not allowed', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_events_append_only
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_events_no_truncate
    BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

CREATE FUNCTION audit_head_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.seq <> OLD.seq + 1 THEN
        RAISE EXCEPTION 'the audit head only moves forward one event at a time'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER audit_head_forward
    BEFORE UPDATE ON audit_head
    FOR EACH ROW EXECUTE FUNCTION audit_head_forward_only();
CREATE TRIGGER audit_head_no_delete
    BEFORE DELETE ON audit_head
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_head_no_truncate
    BEFORE TRUNCATE ON audit_head
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

-- Settings an administrator changes at run time (later features add keys).
CREATE TABLE settings (
    key         text PRIMARY KEY,
    value       jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  uuid REFERENCES users (id)
);
