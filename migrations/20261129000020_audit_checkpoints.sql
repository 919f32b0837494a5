-- Signed checkpoints of the audit chain (cab_domain::checkpoint): the head
-- signed with an Ed25519 key as a C2SP signed note, at least hourly while
-- events arrive and on demand (every export ends at one).

-- The keys that sign checkpoints; kept apart from the deployment signing
-- keys, so neither can be made to sign for the other. The private half is
-- sealed under the server's secret key, as the deployment keys are.
CREATE TABLE audit_checkpoint_keys (
    -- The C2SP key id, hex: SHA-256(name, "\n", 0x01, public key)[:4].
    kid             text PRIMARY KEY,
    -- The key name in the signed notes, fixed when the key is made.
    name            text NOT NULL,
    public_key      bytea NOT NULL CHECK (octet_length(public_key) = 32),
    sealed_private  bytea NOT NULL,
    created_at      timestamptz NOT NULL,
    retired_at      timestamptz
);
CREATE UNIQUE INDEX audit_checkpoint_keys_one_active ON audit_checkpoint_keys ((true))
    WHERE retired_at IS NULL;

-- One checkpoint per head: signing again at the same head gives the same
-- checkpoint back.
CREATE TABLE audit_checkpoints (
    seq        bigint PRIMARY KEY CHECK (seq > 0),
    hash       bytea NOT NULL CHECK (octet_length(hash) = 32),
    signed_at  timestamptz NOT NULL,
    kid        text NOT NULL REFERENCES audit_checkpoint_keys (kid),
    -- The signed note, exactly as signed.
    note       text NOT NULL
);
CREATE INDEX audit_checkpoints_signed ON audit_checkpoints (signed_at);

CREATE TRIGGER audit_checkpoints_append_only
    BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_checkpoints_no_truncate
    BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

-- A key once published stays as it was: only its retirement may be set,
-- once; nothing is deleted.
CREATE FUNCTION audit_checkpoint_keys_kept() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.retired_at IS NOT NULL
       OR NEW.kid <> OLD.kid OR NEW.name <> OLD.name OR NEW.public_key <> OLD.public_key
       OR NEW.sealed_private <> OLD.sealed_private OR NEW.created_at <> OLD.created_at THEN
        RAISE EXCEPTION 'a published checkpoint key is only ever retired, once'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER audit_checkpoint_keys_kept
    BEFORE UPDATE ON audit_checkpoint_keys
    FOR EACH ROW EXECUTE FUNCTION audit_checkpoint_keys_kept();
CREATE TRIGGER audit_checkpoint_keys_no_delete
    BEFORE DELETE ON audit_checkpoint_keys
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_checkpoint_keys_no_truncate
    BEFORE TRUNCATE ON audit_checkpoint_keys
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
