-- Sign-in under attack (see cab_domain::throttle).
--
-- `device` names the browser an attempt came from when it presented a valid
-- device cookie: one CAB issued on an earlier successful sign-in as the same
-- user. Such a browser is exempt from its address's lock (a flood from a
-- shared address does not lock out the people behind it who have signed in
-- there before) until its own failures use up the device's budget. The
-- column holds the cookie's random identifier only, never the cookie.
ALTER TABLE signin_attempts ADD COLUMN device text;
CREATE INDEX signin_attempts_device ON signin_attempts (device, started_at)
    WHERE device IS NOT NULL;

-- The global budget counts failures across every account and address in the
-- window; this keeps that count a short scan of the newest rows.
CREATE INDEX signin_attempts_started ON signin_attempts (started_at);
