-- 0016_parking.down.sql: drops what 0016 added (parked events are lost).
drop table parked_events;
drop table parked_keys;
