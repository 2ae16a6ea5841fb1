-- 0008_dead_letter_identity.up.sql: a dead letter is one record at one
-- position, not only one position.
--
-- dead_letters was unique on (worker, topic, partition, offset) and the
-- dead-letter insert does nothing on a conflict, so that a redelivered poison
-- record is dead-lettered (and copied to the .dlq topic) once. But offsets
-- restart when a topic is deleted and created again: a new bad record at a
-- reused offset met the old row, left no dead letter and no DLQ copy, and its
-- offset was committed. Now the identity includes a digest of the record's
-- key and value, so a redelivery is still the same dead letter and a
-- different record at the same position is a new one. Headers are left out:
-- a dead letter that cannot be stored as it is goes in again with its headers
-- escaped (docs/architecture.md), and that must still be the same record.
alter table dead_letters add column record_md5 text not null
    generated always as (md5(
        case when key is null then '\x00'::bytea else '\x01'::bytea || key end
        || case when payload is null then '\x00'::bytea else '\x01'::bytea || payload end))
    stored;
comment on column dead_letters.record_md5 is
    'MD5 of the record''s key and value (each marked present or absent): with the source position, what makes a dead letter the same record.';
alter table dead_letters drop constraint dead_letters_worker_topic_partition_offset_key;
create unique index dead_letters_record_key
    on dead_letters (worker, topic, partition, "offset", record_md5);
comment on table dead_letters is
    'Every event sent to a dead-letter topic, with the original bytes and headers (same format as outbox.headers) and why; unique per source position and record (record_md5).';
