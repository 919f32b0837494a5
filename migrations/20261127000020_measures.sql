-- The measures of change (see cab_server::metrics): what they read that
-- the records did not yet hold, and the indexes that keep them quick.

-- The commits a deployment carried, as its pipeline reported them: lead
-- time for changes starts at the first.
ALTER TABLE deployments
    ADD COLUMN commit_shas     text[] NOT NULL DEFAULT '{}' CHECK (cardinality(commit_shas) <= 1000),
    ADD COLUMN first_commit_at timestamptz;

-- Deployments that ended, by environment and when they ended.
CREATE INDEX deployments_ended ON deployments (environment, finished_at)
    WHERE state IN ('succeeded', 'failed', 'rolled_back');
-- A change's successful deployments to an environment, in order: its first
-- one, and whether a later one replaced it.
CREATE INDEX deployments_change_succeeded ON deployments (change_id, environment, finished_at)
    WHERE state = 'succeeded';
-- Approval lead time reads decisions by when they were made.
CREATE INDEX changes_decided ON changes (decided_at) WHERE decided_at IS NOT NULL;
