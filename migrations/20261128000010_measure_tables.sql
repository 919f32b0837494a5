-- The measures of change read pre-judged rows instead of judging every
-- deployment on every read (see cab_db::metrics). Each row is derived from
-- the records of one change: its deployments, its decision and its review.
-- A trigger on those records queues the change in measure_pending, in the
-- same transaction as the write; a refresh (any server, one at a time)
-- derives the queued changes' rows again. Nothing here is a kept count:
-- dropping these rows and queueing every change rebuilds them.

-- Changes whose measure rows are out of date.
CREATE TABLE measure_pending (
    change_id uuid PRIMARY KEY REFERENCES changes (id) ON DELETE CASCADE,
    queued_at timestamptz NOT NULL DEFAULT now()
);

-- The tables below hold each row once for every service (`service` = '')
-- and once for each of its services, so that a read for one service scans
-- that service's rows alone.

-- A deployment that ended, judged.
CREATE TABLE measure_deployments (
    deployment_id        uuid NOT NULL,
    service              text NOT NULL,
    change_id            uuid NOT NULL,
    environment          text NOT NULL,
    services             text[] NOT NULL,
    finished_at          timestamptz NOT NULL,
    state                text NOT NULL CHECK (state IN ('succeeded', 'failed', 'rolled_back')),
    -- Failed, rolled back, or (in production) the change's last successful
    -- deployment there when its signed-off review says it needed an
    -- intervention or caused an incident.
    failed               boolean NOT NULL,
    -- The review says the change caused an incident (production only).
    caused               boolean NOT NULL,
    -- From failure to restoration; NULL while not restored (or not failed).
    recovery_minutes     double precision,
    -- When a later successful deployment of its services restored it (when
    -- that is what restored it): a deployment derived later that ended
    -- between the two may change it.
    restored_at          timestamptz,
    break_glass          boolean NOT NULL,
    has_commits          boolean NOT NULL,
    emergency            boolean NOT NULL,
    -- The change's first successful deployment to this environment, and to
    -- any production environment.
    first_in_environment boolean NOT NULL,
    first_in_production  boolean NOT NULL,
    -- For a successful deployment: from the first reported commit when
    -- there is one (from_commit), else from submission.
    lead_hours           double precision,
    from_commit          boolean NOT NULL,
    PRIMARY KEY (deployment_id, service)
);
-- The reads scan this index alone.
CREATE INDEX measure_deployments_ended ON measure_deployments (service, environment, finished_at)
    INCLUDE (state, failed, recovery_minutes, break_glass, has_commits, emergency,
             first_in_environment, first_in_production, lead_hours, from_commit);
CREATE INDEX measure_deployments_change ON measure_deployments (change_id);
-- Failures waiting for a restoration that a later deployment may bring.
CREATE INDEX measure_deployments_restored ON measure_deployments (environment, restored_at)
    WHERE restored_at IS NOT NULL;
CREATE INDEX measure_deployments_unrecovered ON measure_deployments (environment, finished_at)
    WHERE failed AND recovery_minutes IS NULL AND NOT caused AND service = '';

-- A decided change: approval lead time.
CREATE TABLE measure_decisions (
    change_id  uuid NOT NULL,
    service    text NOT NULL,
    decided_at timestamptz NOT NULL,
    risk_level text NOT NULL,
    hours      double precision NOT NULL,
    PRIMARY KEY (change_id, service)
);
CREATE INDEX measure_decisions_decided ON measure_decisions (service, decided_at) INCLUDE (risk_level, hours);

-- An incident a review lists whose cause is still suspected.
CREATE TABLE measure_suspected_incidents (
    change_id  uuid NOT NULL,
    service    text NOT NULL,
    started_at timestamptz NOT NULL
);
CREATE INDEX measure_suspected_incidents_change ON measure_suspected_incidents (change_id);
CREATE INDEX measure_suspected_incidents_started ON measure_suspected_incidents (service, started_at);

-- How many times the rows have been derived: figures read at the same
-- version are the same figures.
CREATE TABLE measure_state (
    only_row   boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    version    bigint NOT NULL DEFAULT 0,
    derived_at timestamptz
);
INSERT INTO measure_state DEFAULT VALUES;

-- What a review's incidents say, read so that a malformed one (written by
-- hand, or imported) is left out rather than stop every refresh.
CREATE FUNCTION measure_time(t text) RETURNS timestamptz LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN t::timestamptz;
EXCEPTION WHEN others THEN
    RETURN NULL;
END $$;
CREATE FUNCTION measure_incidents(content jsonb) RETURNS SETOF jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT x FROM jsonb_array_elements(CASE WHEN jsonb_typeof(content->'incidents') = 'array'
                                            THEN content->'incidents' ELSE '[]' END) x
    WHERE jsonb_typeof(x) = 'object'
$$;

-- Queueing: whatever writes a change's deployments, decision or review
-- queues the change, however it writes. A change already queued has its
-- row locked until the write commits: a refresh passes over it (SKIP
-- LOCKED) rather than derive it from a snapshot without the write.
CREATE FUNCTION measure_queue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'changes' THEN
        INSERT INTO measure_pending (change_id) VALUES (NEW.id)
        ON CONFLICT (change_id) DO UPDATE SET queued_at = measure_pending.queued_at;
    ELSIF TG_TABLE_NAME = 'environments' THEN
        -- Whether an environment is a production one decides how its
        -- deployments are judged.
        INSERT INTO measure_pending (change_id)
        SELECT DISTINCT change_id FROM deployments WHERE environment = NEW.key
        ON CONFLICT (change_id) DO UPDATE SET queued_at = measure_pending.queued_at;
    ELSE
        INSERT INTO measure_pending (change_id) VALUES (NEW.change_id)
        ON CONFLICT (change_id) DO UPDATE SET queued_at = measure_pending.queued_at;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER measure_queue_deployments AFTER INSERT OR UPDATE ON deployments
    FOR EACH ROW EXECUTE FUNCTION measure_queue();
CREATE TRIGGER measure_queue_reviews AFTER INSERT OR UPDATE ON reviews
    FOR EACH ROW EXECUTE FUNCTION measure_queue();
CREATE TRIGGER measure_queue_break_glass AFTER INSERT OR UPDATE ON break_glass
    FOR EACH ROW EXECUTE FUNCTION measure_queue();
CREATE TRIGGER measure_queue_changes_added AFTER INSERT ON changes
    FOR EACH ROW WHEN (NEW.decided_at IS NOT NULL) EXECUTE FUNCTION measure_queue();
CREATE TRIGGER measure_queue_changes AFTER UPDATE OF submitted_at, decided_at, risk_level, services, change_type
    ON changes
    FOR EACH ROW EXECUTE FUNCTION measure_queue();
CREATE TRIGGER measure_queue_environments AFTER UPDATE OF production ON environments
    FOR EACH ROW WHEN (OLD.production IS DISTINCT FROM NEW.production) EXECUTE FUNCTION measure_queue();

-- What exists today is queued; the servers derive it.
INSERT INTO measure_pending (change_id)
SELECT id FROM changes WHERE decided_at IS NOT NULL
UNION
SELECT change_id FROM deployments
UNION
SELECT change_id FROM reviews;
