-- 0002_views.down.sql: drops the views of 0002_views.up.sql.
drop view order_timeline;
drop view order_overview;
