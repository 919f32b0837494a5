-- Everyone who has ever been a contributor of a change. Separation of duties
-- uses this, not only the current list, so dropping oneself from a change
-- does not make one eligible to approve it.
CREATE TABLE change_contributor_history (
    change_id  uuid NOT NULL REFERENCES changes (id),
    user_id    uuid NOT NULL REFERENCES users (id),
    PRIMARY KEY (change_id, user_id)
);
INSERT INTO change_contributor_history (change_id, user_id)
SELECT change_id, user_id FROM change_contributors;
