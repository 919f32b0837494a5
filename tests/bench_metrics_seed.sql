-- Seeds a migrated CAB database for the measures benchmark
-- (tests/bench_metrics.sh): :rows change requests over the last two years
-- on ten services, each deployed to DEV, STAGE and PROD (three deployments
-- a change); about 8 % of production deployments fail and 3 % are rolled
-- back; three in five report their commits; one change in twenty is an
-- emergency; failed changes have reviews with an intervention, and some an
-- incident the change caused. Needs the users `bench` and `rita`.
SET TIME ZONE 'UTC';
INSERT INTO services (name)
SELECT unnest(ARRAY['payments-api','billing','ledger','edge-proxy','crm','bastion','k8s-platform','reporting','notifications','api-gateway'])
ON CONFLICT DO NOTHING;

CREATE TEMP TABLE seed AS
SELECT g,
       (ARRAY['payments-api','billing','ledger','edge-proxy','crm','bastion','k8s-platform','reporting','notifications','api-gateway'])[1 + g % 10] AS svc,
       (ARRAY['low','medium','high','critical'])[1 + (g / 3) % 4] AS risk,
       (g / 3) % 4 AS rank,
       CASE WHEN g % 20 = 0 THEN 'emergency' ELSE 'normal' END AS change_type,
       -- Two years of production deployments, one every ~10 minutes.
       date_trunc('minute', now()) - interval '730 days'
         + make_interval(secs => (g::bigint * 730 * 86400 / :rows)::double precision) AS prod_at,
       CASE WHEN g % 12 = 5 THEN 'failed' WHEN g % 33 = 7 THEN 'rolled_back' ELSE 'succeeded' END AS outcome,
       g % 5 < 3 AS with_commits
FROM generate_series(1, :rows) g;

INSERT INTO changes (id, number, state, author_id, content, title, description, change_type, category, priority,
                     services, environments, window_start, window_end, risk_level, risk_rank, risk_reasons,
                     risk_version, revision, created_at, updated_at, submitted_at, decided_at, approved_revision,
                     closed_at, close_code)
SELECT md5('change' || s.g)::uuid, s.g,
       CASE WHEN s.g % 3 = 0 THEN 'closed' WHEN s.outcome = 'succeeded' THEN 'implemented' ELSE 'implementation_failed' END,
       (SELECT id FROM users WHERE username = 'bench'),
       jsonb_build_object(
         'title', 'Seeded change #' || s.g, 'description', 'Planned work.', 'justification', 'Planned.',
         'change_type', s.change_type, 'category', 'configuration', 'priority', 'medium',
         'services', jsonb_build_array(s.svc), 'environments', jsonb_build_array('DEV', 'STAGE', 'PROD'),
         'implementation_plan', 'Deploy with the pipeline.', 'test_plan', 'CI suites.',
         'test_levels', jsonb_build_object('unit', true, 'integration', true, 'system', false, 'acceptance', false),
         'test_evidence', '[]'::jsonb, 'rollback_plan', 'Redeploy the previous release.',
         'window_start', to_jsonb(s.prod_at - interval '1 hour'), 'window_end', to_jsonb(s.prod_at + interval '2 hours'),
         'window_tz', '+00:00', 'pr_url', '', 'commit_sha', '', 'artifact_digest', '', 'contributors', '[]'::jsonb,
         'risk', jsonb_build_object('impact', 1 + s.rank, 'likelihood', 1 + s.rank,
                                    'touches_production_data', false, 'customer_facing', false,
                                    'changes_security_control', false, 'rollback_untested', false,
                                    'outside_usual_window', false)),
       'Seeded change #' || s.g, 'Planned work.', s.change_type, 'configuration', 'medium', ARRAY[s.svc],
       ARRAY['DEV', 'STAGE', 'PROD'], s.prod_at - interval '1 hour', s.prod_at + interval '2 hours',
       s.risk, s.rank, ARRAY['seeded'], 1, 1,
       s.prod_at - interval '6 days', s.prod_at,
       s.prod_at - interval '5 days',
       -- Approval takes longer the riskier the change.
       s.prod_at - interval '5 days' + make_interval(hours => 2 + 10 * s.rank + s.g % 7),
       1,
       CASE WHEN s.g % 3 = 0 THEN s.prod_at + interval '1 day' END,
       CASE WHEN s.g % 3 = 0 THEN
         CASE s.outcome WHEN 'succeeded' THEN 'successful' WHEN 'failed' THEN 'failed_not_rolled_back' ELSE 'failed_rolled_back' END
       END
FROM seed s;
SELECT setval('change_number_seq', (SELECT max(number) FROM changes));

-- DEV two days before, STAGE one day before, then PROD.
INSERT INTO deployments (id, change_id, revision, environment, artifact_name, artifact_version, artifact_digest,
                         services, initiator_id, executor_id, state, authorized_at, expires_at, token_id,
                         token_used_at, started_at, finished_at, rolled_back_at, updated_at, commit_shas, first_commit_at)
SELECT md5('deployment' || s.g || e.env)::uuid, md5('change' || s.g)::uuid, 1, e.env, 'seeded/app', '1.' || s.g,
       'sha256:' || md5(s.g::text) || md5(s.g::text),
       ARRAY[s.svc], u.id, u.id,
       CASE WHEN e.env = 'prod' THEN s.outcome ELSE 'succeeded' END,
       s.prod_at - e.before - interval '10 minutes', s.prod_at - e.before + interval '1 hour', gen_random_uuid(),
       s.prod_at - e.before - interval '5 minutes', s.prod_at - e.before - interval '5 minutes',
       s.prod_at - e.before,
       CASE WHEN e.env = 'prod' AND s.outcome = 'rolled_back' THEN s.prod_at + make_interval(mins => 20 + s.g % 90) END,
       s.prod_at - e.before,
       CASE WHEN s.with_commits THEN ARRAY[left(md5('c' || s.g), 12), left(md5('d' || s.g), 12)] ELSE '{}' END,
       CASE WHEN s.with_commits THEN s.prod_at - make_interval(hours => 150 + s.g % 200) END
FROM seed s
CROSS JOIN (VALUES ('dev', interval '2 days'), ('stage', interval '1 day'), ('prod', interval '0')) AS e(env, before)
CROSS JOIN (SELECT id FROM users WHERE username = 'bench') u;

-- Reviews: every failed production change, and the emergency ones.
INSERT INTO reviews (change_id, required, reasons, due_at, content, revision, state, signed_off_by, signed_off_at,
                     signed_off_revision, first_signed_off_at, created_at, updated_at)
SELECT md5('change' || s.g)::uuid, true,
       CASE WHEN s.outcome <> 'succeeded' THEN ARRAY['failed'] ELSE ARRAY['emergency'] END,
       s.prod_at + interval '5 days',
       jsonb_build_object(
         'outcome', 'Seeded review.',
         'intervention', CASE WHEN s.outcome = 'rolled_back' THEN 'rollback' WHEN s.outcome = 'failed' THEN 'forward_fix'
                              WHEN s.g % 40 = 0 THEN 'hotfix' ELSE 'none' END,
         'incidents', CASE WHEN s.g % 7 = 0 THEN jsonb_build_array(jsonb_build_object(
                         'reference', 'INC-' || s.g, 'severity', 'sev2',
                         'caused', CASE WHEN s.g % 2 = 0 THEN 'confirmed' ELSE 'suspected' END,
                         'started_at', to_jsonb(s.prod_at + interval '15 minutes'),
                         'restored_at', to_jsonb(s.prod_at + make_interval(mins => 45 + s.g % 120))))
                      ELSE '[]'::jsonb END,
         'went_well', '', 'went_wrong', '', 'lessons', 'Seeded.'),
       1, 'signed_off', (SELECT id FROM users WHERE username = 'rita'), s.prod_at + interval '2 days', 1,
       s.prod_at + interval '2 days', s.prod_at, s.prod_at + interval '2 days'
FROM seed s
WHERE s.outcome <> 'succeeded' OR s.change_type = 'emergency';
VACUUM ANALYZE;
