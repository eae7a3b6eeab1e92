-- dlq-handler's store, version 1. Applied by dlq-handler at start (ddl.DLQMigrations, in file
-- name order, each file once, recorded in schema_migrations) inside the schema DLQ_SCHEMA (the
-- connection's search_path), so no name here is schema-qualified. Never edit an applied file:
-- add the next one.

-- One row per dead letter, keyed by its deterministic id (a re-delivered dead letter is one row).
CREATE TABLE dead_letters (
    dead_letter_id   text PRIMARY KEY,
    stage            text        NOT NULL,  -- the service that rejected the record
    entity           text,                  -- click_event, order, product_change, customer_change; NULL when unknown
    source_topic     text        NOT NULL,  -- the topic the stage read, or "http:<path>" for an HTTP ingress
    source_partition integer     NOT NULL,
    source_offset    bigint      NOT NULL,
    source_timestamp timestamptz NOT NULL,
    original_key     bytea,
    original_value   bytea,                 -- NULL once purged by the PII retention (pii_purged_at)
    original_headers jsonb       NOT NULL DEFAULT '[]', -- [{"key": text, "value": base64}], in order
    schema_id        integer,               -- registry id of the original's writer schema (Avro)
    reasons          jsonb       NOT NULL,  -- [{"code", "rule_id", "field", "message"}], in order
    codes            text[]      NOT NULL,  -- distinct reason codes
    rule_ids         text[]      NOT NULL,  -- distinct rule ids (RULE_FAILED reasons)
    message          text        NOT NULL,  -- the reasons' messages, one per line (free-text search)
    message_tsv      tsvector GENERATED ALWAYS AS (to_tsvector('simple', message)) STORED,
    attempt          integer     NOT NULL,  -- 1 for a first rejection; a replay's rejection is the replayed attempt + 1
    trace_id         text,
    failed_at        timestamptz NOT NULL,  -- when the stage rejected it
    -- Where dlq-handler read it (ecom.dlq.v1).
    dlq_partition    integer     NOT NULL,
    dlq_offset       bigint      NOT NULL,
    stored_at        timestamptz NOT NULL DEFAULT now(),
    -- The dead letter whose replay this one rejects again (its original carried the replay
    -- header); that one's state is failed_again.
    replay_of        text,
    -- Personal data: the entity's originals may carry it (customer_change: email; order: the
    -- customer's data). Shown redacted unless the caller may see PII; purged after DLQ_PII_RETENTION.
    pii              boolean     NOT NULL DEFAULT false,
    pii_purged_at    timestamptz,
    state            text        NOT NULL DEFAULT 'new'
                     CHECK (state IN ('new', 'replayed', 'discarded', 'resolved', 'failed_again')),
    state_changed_at timestamptz NOT NULL DEFAULT now(),
    discard_reason   text,
    discarded_by     text,
    CHECK (state <> 'discarded' OR (discard_reason IS NOT NULL AND discarded_by IS NOT NULL))
);

-- The list's filters and orders: newest first by (failed_at, dead_letter_id), keyset-paginated.
CREATE INDEX dead_letters_failed_at ON dead_letters (failed_at DESC, dead_letter_id DESC);
CREATE INDEX dead_letters_stage ON dead_letters (stage, failed_at DESC);
CREATE INDEX dead_letters_entity ON dead_letters (entity, failed_at DESC);
CREATE INDEX dead_letters_state ON dead_letters (state, failed_at DESC);
CREATE INDEX dead_letters_codes ON dead_letters USING gin (codes);
CREATE INDEX dead_letters_rule_ids ON dead_letters USING gin (rule_ids);
CREATE INDEX dead_letters_message ON dead_letters USING gin (message_tsv);
CREATE INDEX dead_letters_replay_of ON dead_letters (replay_of) WHERE replay_of IS NOT NULL;
-- The oldest unresolved one (the alert signal) and the retention's scans.
CREATE INDEX dead_letters_unresolved ON dead_letters (failed_at) WHERE state IN ('new', 'replayed', 'failed_again');
CREATE INDEX dead_letters_pii ON dead_letters (failed_at) WHERE pii AND pii_purged_at IS NULL;

-- The Kafka positions the rows cover: written in the same transaction as the rows, read on
-- every partition assignment (PostgreSQL, not Kafka, is the source of truth of what was stored).
CREATE TABLE consumer_positions (
    consumer_group text    NOT NULL,
    topic          text    NOT NULL,
    partition      integer NOT NULL,
    next_offset    bigint  NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition)
);

-- A replay by filter (or of a list): the job, its progress and its outcome.
CREATE TABLE replay_jobs (
    job_id       text PRIMARY KEY,
    requested_by text        NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    filter       jsonb       NOT NULL,  -- the list filter, or {"ids": [...]}
    rate_limit   double precision NOT NULL, -- records per second
    total        integer     NOT NULL,  -- dead letters the job planned
    sent         integer     NOT NULL DEFAULT 0,
    state        text        NOT NULL DEFAULT 'running'
                 CHECK (state IN ('running', 'succeeded', 'failed', 'cancelled')),
    finished_at  timestamptz,
    error        text
);

-- The replay outbox: one row per (dead letter, attempt) replayed, recorded before the record is
-- produced and marked sent after. A repeated request finds the row and does nothing; at start,
-- rows recorded but not sent are sent.
CREATE TABLE replays (
    dead_letter_id   text        NOT NULL REFERENCES dead_letters ON DELETE CASCADE,
    attempt          integer     NOT NULL,  -- the dead letter's attempt that is replayed
    job_id           text        REFERENCES replay_jobs ON DELETE SET NULL,
    requested_by     text        NOT NULL,
    requested_at     timestamptz NOT NULL DEFAULT now(),
    target_topic     text        NOT NULL,
    sent_at          timestamptz,
    target_partition integer,
    target_offset    bigint,
    outcome          text        NOT NULL DEFAULT 'pending'
                     CHECK (outcome IN ('pending', 'sent', 'resolved', 'failed_again')),
    outcome_at       timestamptz,
    PRIMARY KEY (dead_letter_id, attempt)
);
CREATE INDEX replays_unsent ON replays (requested_at) WHERE sent_at IS NULL;
CREATE INDEX replays_sent ON replays (sent_at) WHERE outcome = 'sent';
CREATE INDEX replays_job ON replays (job_id);

-- Every operator action (who, what, when), queryable through the API.
CREATE TABLE audit_log (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    actor   text        NOT NULL,  -- the token's name
    role    text        NOT NULL,  -- viewer | operator
    action  text        NOT NULL,  -- replay, replay_job, discard, retention, login, ...
    target  jsonb       NOT NULL DEFAULT '{}', -- ids, a filter, a job id
    detail  jsonb       NOT NULL DEFAULT '{}'  -- counts, reason, outcome
);
CREATE INDEX audit_log_at ON audit_log (at DESC);
CREATE INDEX audit_log_actor ON audit_log (actor, at DESC);
