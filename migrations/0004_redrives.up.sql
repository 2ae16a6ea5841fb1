-- 0004_redrives.up.sql: the bookkeeping of `orderctl dlq redrive`: one row per
-- republication of a dead letter's original record, with where it landed.
--
-- dead_letters.redriven_at / redrive_count (0001) say that and how often a
-- dead letter was redriven; this table keeps every redrive, so an operator can
-- follow each republished record: a dead letter at the same topic, partition
-- and offset means it failed again, an inbox row there means it took effect.

create table redrives (
    id bigint generated always as identity primary key,
    dead_letter_id bigint not null references dead_letters (id) on delete cascade,
    at timestamptz not null default now(),
    topic text not null,
    partition integer not null,
    "offset" bigint not null,
    note text
);
create index redrives_dead_letter_id_idx on redrives (dead_letter_id);
comment on table redrives is
    'Every redrive of a dead letter (orderctl dlq redrive): the original record republished unchanged, same ce_id, so the inbox still drops it where it already took effect.';
comment on column redrives.partition is
    'Kafka position of the republished record (topic, partition, offset), to match a later dead letter or inbox row.';
comment on column redrives.note is 'Why the operator redrove it (orderctl dlq redrive --note).';
