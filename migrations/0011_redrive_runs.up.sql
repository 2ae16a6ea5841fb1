-- 0011_redrive_runs.up.sql: every `orderctl dlq redrive` run on record (who,
-- when, which predicate, how many dead letters it matched), and what a
-- predicate over an order needs.
--
-- A run is one invocation that sends something: its row is written (and
-- committed) before the first record goes out, and each redrives row (0004)
-- names its run, so `orderctl dlq history` shows how many of a run's records
-- were sent even when the run was stopped half way. A dry run sends and
-- records nothing.
create table redrive_runs (
    id bigint generated always as identity primary key,
    at timestamptz not null default now(),
    operator text not null,
    db_user text not null default current_user,
    predicate text not null,
    matched integer not null check (matched >= 0),
    note text
);
comment on table redrive_runs is
    'One row per orderctl dlq redrive run that sent records: who, when, the predicate (or the ids) it was given and how many dead letters it matched; its redrives rows say which were sent.';
comment on column redrive_runs.operator is
    'The operating-system user and host orderctl ran as (user@host).';
comment on column redrive_runs.predicate is
    'What selected the dead letters: the --where predicate as orderctl normalised it, or "id in (...)".';

alter table redrives add column run_id bigint references redrive_runs (id) on delete set null;
create index redrives_run_id_idx on redrives (run_id);
comment on column redrives.run_id is 'The redrive run that sent it (null for redrives older than 0011).';

-- `--where order=ID`: the dead letters of one order are those whose Kafka key
-- is its id (for order.created, the ce_id of the order.created event).
create index dead_letters_key_idx on dead_letters (key);

grant insert on redrive_runs to orderflow_orderctl;
