-- Idempotency-Key on the API's creating requests: one effect per caller and
-- key, however often the request is retried and whenever the server stops.
--
-- A row is written by the creating request's own transaction, just before it
-- commits, naming what it created: an effect never exists without its key,
-- nor a key without its effect. A retry that races the first request waits
-- on the primary key and then finds the row. Once the answer has been sent,
-- it is stored on the row for retries to replay; a retry that finds no
-- answer (the server stopped in between) is answered with the resource as it
-- is now.
--
-- Keys are scoped per caller (`user_id`, the authenticated account) and count
-- for 24 hours from `created_at`; older rows are ignored, replaced by a new
-- binding of the same key, and deleted by a purge that one server at a time
-- runs. Neither the key nor any answer is kept in the clear: `key_hash` is
-- SHA-256 of the key, and `sealed_secret` and `response_body` are encrypted
-- (XChaCha20-Poly1305) with a key derived from the server's secret key, the
-- caller and the Idempotency-Key itself.
--
-- The serving role reads and writes it with the ordinary grants (default
-- privileges, see crates/cab-server/src/db/roles.rs).
CREATE TABLE idempotency_keys (
    user_id          uuid NOT NULL REFERENCES users (id),
    key_hash         bytea NOT NULL CHECK (octet_length(key_hash) = 32),
    -- SHA-256 of the method, path and body of the request that bound the key.
    fingerprint      bytea NOT NULL CHECK (octet_length(fingerprint) = 32),
    entity_kind      text NOT NULL
                     CHECK (entity_kind IN ('change', 'comment', 'user', 'api_token', 'template')),
    entity_id        uuid NOT NULL,
    -- What the effect shows only once (a generated password, an API token).
    sealed_secret    bytea,
    created_at       timestamptz NOT NULL,
    -- The answer sent, once stored.
    response_status  smallint CHECK (response_status BETWEEN 200 AND 299),
    response_type    text,
    response_location text,
    response_body    bytea,
    answered_at      timestamptz,
    PRIMARY KEY (user_id, key_hash),
    CHECK ((response_status IS NULL) = (response_body IS NULL)),
    CHECK ((response_status IS NULL) = (answered_at IS NULL))
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
