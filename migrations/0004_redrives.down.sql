-- 0004_redrives.down.sql: drops the table added by 0004.
drop table redrives;
