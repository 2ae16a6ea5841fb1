-- 0008_dead_letter_identity.down.sql: back to one dead letter per source
-- position. Where a position holds more than one record (a topic recreated),
-- only the oldest dead letter of it is kept: the others (and their redrive
-- rows) are deleted, since the old unique constraint cannot hold them.
delete from dead_letters d using dead_letters o
    where o.worker = d.worker and o.topic = d.topic and o.partition = d.partition
      and o."offset" = d."offset" and o.id < d.id;
drop index dead_letters_record_key;
alter table dead_letters add constraint dead_letters_worker_topic_partition_offset_key
    unique (worker, topic, partition, "offset");
alter table dead_letters drop column record_md5;
comment on table dead_letters is
    'Every event sent to a dead-letter topic, with the original bytes and headers (same format as outbox.headers) and why; unique per source position.';
