-- Every check of the whole audit chain from its first event, with every
-- signed checkpoint: run daily by one of the servers, and whenever someone
-- runs `cab audit verify`. The audit page checks only from the latest
-- checkpoint on, at every view; a rewrite of older events by someone going
-- around CAB (re-hashed up to just before a checkpoint) shows in the next
-- whole check, which the page reports.
CREATE TABLE audit_verifications (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz NOT NULL CHECK (finished_at >= started_at),
    -- 'schedule' (a server) or 'command' (`cab audit verify`).
    run_by       text NOT NULL CHECK (run_by IN ('schedule', 'command')),
    -- The head the check ran to, and what it checked.
    head_seq     bigint NOT NULL CHECK (head_seq >= 0),
    events       bigint NOT NULL CHECK (events >= 0),
    checkpoints  bigint NOT NULL CHECK (checkpoints >= 0),
    -- Null when intact; otherwise what failed, in words, and the event (or
    -- checkpoint) where it did.
    finding      text,
    finding_seq  bigint,
    CHECK ((finding IS NULL) = (finding_seq IS NULL))
);

CREATE TRIGGER audit_verifications_append_only
    BEFORE UPDATE OR DELETE ON audit_verifications
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_verifications_no_truncate
    BEFORE TRUNCATE ON audit_verifications
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
