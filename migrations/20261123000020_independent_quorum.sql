-- The quorum a change needs is fixed when it is submitted: a later change of
-- the policy applies to new submissions only, never to a change already in
-- review (lowering the quorum must not approve anything retroactively).
ALTER TABLE changes ADD COLUMN quorum_policy jsonb;

-- Changes awaiting a decision keep the policy in force now.
UPDATE changes
   SET quorum_policy = COALESCE(
         (SELECT value FROM settings WHERE key = 'quorum_policy'),
         '{"low": {"approvals": 1, "assessment": false},
           "medium": {"approvals": 2, "assessment": false},
           "high": {"approvals": 2, "assessment": true},
           "critical": {"approvals": 3, "assessment": true},
           "emergency": {"approvals": 1, "assessment": true}}'::jsonb)
 WHERE state IN ('submitted', 'in_assessment', 'in_cab_review');

-- A change filed by a pipeline names the person it is filed for, who is its
-- author; the service account that filed it is kept here.
ALTER TABLE changes ADD COLUMN filed_by uuid REFERENCES users (id);
