-- dlq-handler's store, version 3: the q search of a caller without the PII right.
--
-- message_redacted is the reasons' messages as such a caller sees them (redact.Message of each
-- reason, joined like message): written by store.Write with the row, in Go, so that it is exactly
-- what the API and the console show. Rows stored before this version hold NULL until dlq-handler's
-- backfill (store.BackfillSearch, run at start in chunks) fills them; meanwhile such a caller's
-- search does not find them (it never matches unredacted text). The backfill is Go, not SQL here:
-- PostgreSQL's regular expressions and lower() do not read every message the way Go's regexp and
-- strings.ToLower do, and the column must hold exactly what redact.Message returns.
ALTER TABLE dead_letters ADD COLUMN message_redacted text;
ALTER TABLE dead_letters ADD COLUMN message_redacted_tsv tsvector
    GENERATED ALWAYS AS (to_tsvector('simple', coalesce(message_redacted, ''))) STORED;
CREATE INDEX dead_letters_message_redacted ON dead_letters USING gin (message_redacted_tsv);
-- The rows the backfill has still to do (empty once it ran).
CREATE INDEX dead_letters_message_unredacted ON dead_letters (dead_letter_id) WHERE message_redacted IS NULL;
