-- dlq-handler's store, version 2: the PII retention's watermarks and a one-off backfill, so
-- that every retention run reads only what it has not handled yet (through partial indexes)
-- instead of re-reading and re-masking everything older than DLQ_RETENTION_PII.
-- The patterns below are internal/redact's (QuotedPattern, EmailPattern, FieldPattern,
-- CamelPattern) as SQL literals; internal/store's tests check that they are the same.

-- Audit entries and replay jobs: when the retention masked them (NULL = not yet). A run
-- takes only the ones older than the retention that are not masked yet.
ALTER TABLE audit_log ADD COLUMN IF NOT EXISTS redacted_at timestamptz;
CREATE INDEX IF NOT EXISTS audit_log_unredacted ON audit_log (at, id) WHERE redacted_at IS NULL;
ALTER TABLE replay_jobs ADD COLUMN IF NOT EXISTS redacted_at timestamptz;
CREATE INDEX IF NOT EXISTS replay_jobs_unredacted ON replay_jobs (requested_at, job_id) WHERE redacted_at IS NULL;

-- Rows whose originals an older dlq-handler purged before the retention masked messages too:
-- masked now, once, so that the retention can go back to taking only rows not purged yet
-- (pii AND pii_purged_at IS NULL, the dead_letters_pii index). Masking is idempotent.
UPDATE dead_letters SET
    message = regexp_replace(regexp_replace(message,
        '"([^"\\]|\\.)*"', '"[redacted]"', 'g'),
        '[A-Za-z0-9.!#$%&''*+/=?^_{|}~-]+@[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+', '[redacted]', 'g'),
    reasons = coalesce((SELECT jsonb_agg(CASE WHEN jsonb_typeof(x.r->'message') = 'string'
            THEN jsonb_set(x.r, '{message}', to_jsonb(regexp_replace(regexp_replace(x.r->>'message',
                '"([^"\\]|\\.)*"', '"[redacted]"', 'g'),
                '[A-Za-z0-9.!#$%&''*+/=?^_{|}~-]+@[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+', '[redacted]', 'g')))
            ELSE x.r END ORDER BY x.n)
        FROM jsonb_array_elements(reasons) WITH ORDINALITY AS x(r, n)), '[]')
WHERE pii AND pii_purged_at IS NOT NULL AND message <> regexp_replace(regexp_replace(message,
        '"([^"\\]|\\.)*"', '"[redacted]"', 'g'),
        '[A-Za-z0-9.!#$%&''*+/=?^_{|}~-]+@[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+', '[redacted]', 'g');

-- Rows an older dlq-handler did not flag pii although a reason names a personal field
-- (a click_event rejected for its client_ip): flagged now, as ingest flags them since
-- version 2; the next retention run purges the ones past DLQ_RETENTION_PII.
UPDATE dead_letters SET pii = true
WHERE NOT pii AND EXISTS (
    SELECT 1 FROM jsonb_array_elements(reasons) AS x(r)
    WHERE jsonb_typeof(x.r->'field') = 'string'
      AND lower(regexp_replace(x.r->>'field', '([a-z0-9])([A-Z])', '\1_\2', 'g'))
          ~ '(^|[^a-z0-9])(email|emailaddress|mail|name|firstname|lastname|fullname|surname|username|phone|telephone|mobile|address|street|city|postcode|postal|postalcode|zip|zipcode|ip|ipv4|ipv6|ipaddress)([^a-z0-9]|$)');
