-- The audit trail page, its API and its exports filter by time, account and
-- action, newest or oldest first by sequence number.
CREATE INDEX audit_events_time ON audit_events (occurred_at);
CREATE INDEX audit_events_actor ON audit_events (actor_username, seq);
CREATE INDEX audit_events_action ON audit_events (action, seq);

-- The events a filter selects. Each argument left NULL selects everything.
-- A plain SQL function of one SELECT, so PostgreSQL inlines it into the
-- calling query and the indexes above serve it; the page, the API and the
-- exports all filter through it, so they can never disagree.
--   p_change: a change's id; selects its own events and those of its
--             deployments and break-glass requests.
--   p_refused: true for refusals only, false for everything but refusals.
CREATE FUNCTION audit_events_matching(
    p_from timestamptz, p_until timestamptz, p_actor text, p_action text,
    p_entity_type text, p_entity_id text, p_change text, p_refused boolean)
RETURNS SETOF audit_events
LANGUAGE sql STABLE AS $$
    SELECT * FROM audit_events e
    WHERE (p_from IS NULL OR e.occurred_at >= p_from)
      AND (p_until IS NULL OR e.occurred_at < p_until)
      AND (p_actor IS NULL OR e.actor_username = p_actor)
      AND (p_action IS NULL OR e.action = p_action)
      AND (p_entity_type IS NULL OR e.entity_type = p_entity_type)
      AND (p_entity_id IS NULL OR e.entity_id = p_entity_id)
      AND (p_change IS NULL
           OR (e.entity_type = 'change' AND e.entity_id = p_change)
           OR (e.entity_type IN ('deployment', 'break_glass') AND e.payload->>'change_id' = p_change))
      AND (p_refused IS NULL OR (e.action = 'access.denied') = p_refused)
$$;

-- An identifier recorded as text, as a uuid when it is one (NULL otherwise):
-- joins the events to what they are about without failing on any text.
CREATE FUNCTION audit_uuid(t text) RETURNS uuid
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN t ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                THEN t::uuid END
$$;
