-- Sign-in throttling counts an attempt from the moment it is let through to
-- the password check, not once it has failed: otherwise attempts sent in
-- parallel all pass the check before any of them is counted. See
-- cab_domain::throttle.
--
-- An attempt is 'pending' while its password is being checked and counts as
-- a failure meanwhile. A successful sign-in that overlapped no other attempt
-- on the account deletes the account's earlier rows and its own; one amid
-- other attempts stays as 'succeeded' and keeps counting. Rows older than a
-- day are pruned as new failures arrive.
CREATE TABLE signin_attempts (
    id           bigserial PRIMARY KEY,
    username     text NOT NULL,
    client_addr  text NOT NULL,
    started_at   timestamptz NOT NULL,
    outcome      text NOT NULL CHECK (outcome IN ('pending', 'failed', 'succeeded')),
    -- Whether another attempt on the account was pending when this one was
    -- let through.
    overlapped   boolean NOT NULL
);
CREATE INDEX signin_attempts_username ON signin_attempts (username, started_at);
CREATE INDEX signin_attempts_addr ON signin_attempts (client_addr, started_at);

INSERT INTO signin_attempts (username, client_addr, started_at, outcome, overlapped)
SELECT username, client_addr, failed_at, 'failed', false FROM login_failures;

DROP TABLE login_failures;
