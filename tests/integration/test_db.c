/* test_db.c: integration test of the db module against a real PostgreSQL
 * (pipelines, SQL errors, a killed backend and reconnect, sessions, close). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <libpq-fe.h>
#include <uv.h>

#include "orderflow/db.h"
#include "orderflow/log.h"
#include "orderflow/uuid.h"

#define WAIT_MS    20000 /* longest wait for one step */
#define TICK_MS    20    /* wakes the loop while waiting */
#define N_INSERTS  100
#define MAX_STATES 32

/* The scratch table and the statements on it (built at start, static
 * because of_db keeps a pointer to the statement array). */
static char table[64];
static char sql_insert[160];
static char sql_count[160];
static of_db_stmt stmts[2];

/* One test run: the loop, the connection under test, a plain blocking
 * connection for setup and sabotage, and what the callbacks saw. */
typedef struct ctx {
    uv_loop_t loop;                 /* loop driving the connection */
    uv_timer_t tick;                /* keeps uv_run(ONCE) returning while waiting */
    of_db db;                       /* connection under test */
    PGconn *admin;                  /* plain libpq connection (blocking) */
    of_db_state states[MAX_STATES]; /* state changes in order */
    size_t n_states;                /* entries used in states */
    bool closed;                    /* of_db close callback ran */
} ctx;

/* The completion of one submitted pipeline. */
typedef struct done {
    bool called; /* the callback ran */
    int calls;   /* how often it ran (must be once) */
    int status;  /* status it got */
} done;

static void on_state(of_db *db, of_db_state state, void *arg)
{
    ctx *t = arg;
    if (t->n_states < MAX_STATES)
        t->states[t->n_states++] = state;
}

static void on_pipeline(of_db *db, of_db_pipeline *p, int status, void *arg)
{
    done *d = arg;
    d->called = true;
    d->calls++;
    d->status = status;
}

static void on_closed(of_db *db)
{
    ctx *t = db->state_arg;
    t->closed = true;
}

static void on_tick(uv_timer_t *timer)
{
}

/* Runs the loop until *flag is set; fails the test after WAIT_MS. */
static void wait_for(ctx *t, const bool *flag, const char *what)
{
    uint64_t deadline;
    uv_update_time(&t->loop);
    deadline = uv_now(&t->loop) + WAIT_MS;
    while (!*flag) {
        uv_run(&t->loop, UV_RUN_ONCE);
        if (uv_now(&t->loop) > deadline)
            fail_msg("timed out waiting for %s", what);
    }
}

/* Runs the loop until the connection is READY; fails after WAIT_MS. */
static void wait_ready(ctx *t)
{
    uint64_t deadline;
    uv_update_time(&t->loop);
    deadline = uv_now(&t->loop) + WAIT_MS;
    while (!of_db_ready(&t->db)) {
        uv_run(&t->loop, UV_RUN_ONCE);
        if (uv_now(&t->loop) > deadline)
            fail_msg("timed out waiting for the connection to be ready");
    }
}

/* Submits p and runs the loop until its callback ran; returns the status. */
static int run_pipeline(ctx *t, of_db_pipeline *p)
{
    done d = {0};
    assert_int_equal(of_db_submit(&t->db, p, on_pipeline, &d), OF_OK);
    wait_for(t, &d.called, "a pipeline");
    assert_int_equal(d.calls, 1);
    assert_int_equal(p->status, d.status);
    return d.status;
}

/* Runs SQL on the admin connection; returns the first value of the first row
 * as a number (0 when there is none). */
static long admin_query(ctx *t, const char *sql)
{
    PGresult *r = PQexec(t->admin, sql);
    long value = 0;
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        fail_msg("admin query \"%s\" failed: %s", sql, PQerrorMessage(t->admin));
    if (st == PGRES_TUPLES_OK && PQntuples(r) > 0)
        value = strtol(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return value;
}

static long table_count(ctx *t)
{
    char sql[128];
    snprintf(sql, sizeof sql, "select count(*) from %s", table);
    return admin_query(t, sql);
}

static long count_of(const of_db_pipeline *p, size_t i)
{
    PGresult *r = of_db_pipeline_result(p, i);
    assert_non_null(r);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(r), 1);
    return strtol(PQgetvalue(r, 0, 0), NULL, 10);
}

static void add_insert(of_db_pipeline *p, int id)
{
    char ids[16], v[32];
    snprintf(ids, sizeof ids, "%d", id);
    snprintf(v, sizeof v, "value-%d", id);
    const char *values[2] = {ids, v};
    assert_int_equal(of_db_pipeline_add(p, "it_insert", 2, values), OF_OK);
}

static void add_sql(of_db_pipeline *p, const char *sql)
{
    assert_int_equal(of_db_pipeline_add_sql(p, sql, 0, NULL), OF_OK);
}

/* Index of state in the recorded history at or after from, or -1. */
static long find_state(const ctx *t, size_t from, of_db_state state)
{
    for (size_t i = from; i < t->n_states; i++) {
        if (t->states[i] == state)
            return (long)i;
    }
    return -1;
}

static int setup(void **state)
{
    const char *url = getenv("DATABASE_URL");
    char id[OF_UUID_STRLEN + 1];
    char sql[256];
    ctx *t;

    if (url == NULL || url[0] == '\0') {
        fprintf(stderr, "DATABASE_URL is not set (run under ctest with the stack fixture)\n");
        return -1;
    }
    t = calloc(1, sizeof *t);
    if (t == NULL || of_uuid_v4(id) != 0)
        return -1;
    /* A table only this run uses: pid plus random bits. */
    snprintf(table, sizeof table, "of_it_db_%ld_%.8s", (long)getpid(), id);
    snprintf(sql_insert, sizeof sql_insert, "insert into %s (id, v) values ($1, $2)", table);
    snprintf(sql_count, sizeof sql_count, "select count(*) from %s", table);
    stmts[0] = (of_db_stmt){"it_insert", sql_insert, false};
    stmts[1] = (of_db_stmt){"it_count", sql_count, false};

    t->admin = PQconnectdb(url);
    if (PQstatus(t->admin) != CONNECTION_OK) {
        fprintf(stderr, "could not connect to \"%s\": %s\n", url, PQerrorMessage(t->admin));
        PQfinish(t->admin);
        free(t);
        return -1;
    }
    snprintf(sql, sizeof sql, "create table %s (id integer primary key, v text not null)", table);
    PGresult *r = PQexec(t->admin, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!ok) {
        fprintf(stderr, "could not create table \"%s\": %s\n", table, PQerrorMessage(t->admin));
        PQfinish(t->admin);
        free(t);
        return -1;
    }
    if (uv_loop_init(&t->loop) != 0 || uv_timer_init(&t->loop, &t->tick) != 0 ||
        uv_timer_start(&t->tick, on_tick, TICK_MS, TICK_MS) != 0)
        return -1;
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    ctx *t = *state;
    char sql[128];
    int result = 0;
    if (t == NULL)
        return 0;
    /* After a failed assertion the connection may still hold locks on the
     * table (an open transaction): drop it so the DROP cannot wait on it. */
    if (!t->closed && t->db.conn != NULL) {
        PQfinish(t->db.conn);
        t->db.conn = NULL;
    }
    PQclear(PQexec(t->admin, "set lock_timeout = '10s'"));
    snprintf(sql, sizeof sql, "drop table if exists %s", table);
    PGresult *r = PQexec(t->admin, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "could not drop table \"%s\": %s\n", table, PQerrorMessage(t->admin));
        result = -1;
    }
    PQclear(r);
    PQfinish(t->admin);
    free(t);
    return result;
}

static void test_db_lifecycle(void **state)
{
    ctx *t = *state;
    of_db_pipeline p, q, r;
    of_db_pipeline_init(&p);
    of_db_pipeline_init(&q);
    of_db_pipeline_init(&r);

    /* Connect: the statements are prepared before the state is READY. */
    assert_int_equal(
        of_db_init(&t->db, &t->loop, getenv("DATABASE_URL"), "it", stmts, 2, on_state, t), OF_OK);
    assert_false(of_db_ready(&t->db));
    assert_int_equal(of_db_start(&t->db), OF_OK);
    assert_int_equal(of_db_start(&t->db), OF_ESTATE);
    wait_ready(t);
    assert_true(of_db_ready(&t->db));
    assert_true(of_db_idle(&t->db));
    long connecting = find_state(t, 0, OF_DB_CONNECTING);
    long preparing = find_state(t, 0, OF_DB_PREPARING);
    long ready = find_state(t, 0, OF_DB_READY);
    assert_true(connecting >= 0);
    assert_true(preparing > connecting);
    assert_true(ready > preparing);
    uint64_t session1 = of_db_session(&t->db);
    assert_true(session1 > 0);

    /* BEGIN + 100 inserts + COMMIT in one pipeline: 102 results. */
    add_sql(&p, "begin");
    for (int i = 1; i <= N_INSERTS; i++)
        add_insert(&p, i);
    add_sql(&p, "commit");
    assert_int_equal(run_pipeline(t, &p), OF_OK);
    assert_int_equal(p.n, N_INSERTS + 2);
    assert_int_equal(p.failed_index, -1);
    assert_string_equal(p.sqlstate, "");
    for (size_t i = 0; i < p.n; i++) {
        PGresult *res = of_db_pipeline_result(&p, i);
        assert_non_null(res);
        assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    }
    assert_string_equal(PQcmdTuples(of_db_pipeline_result(&p, 1)), "1");
    assert_true(p.elapsed_ns > 0);
    assert_int_equal(table_count(t), N_INSERTS);
    assert_true(of_db_idle(&t->db));

    /* A unique violation in the 3rd command: the rest of the pipeline is
     * aborted and the whole transaction has no effect. */
    of_db_pipeline_reset(&p);
    add_sql(&p, "begin");
    add_insert(&p, 1000);
    add_insert(&p, 1); /* exists */
    add_insert(&p, 1001);
    add_sql(&p, "commit");
    assert_int_equal(run_pipeline(t, &p), OF_ESQL);
    assert_int_equal(p.failed_index, 2);
    assert_string_equal(p.sqlstate, "23505");
    assert_true(strlen(p.error) > 0);
    assert_int_equal(PQresultStatus(of_db_pipeline_result(&p, 0)), PGRES_COMMAND_OK);
    assert_int_equal(PQresultStatus(of_db_pipeline_result(&p, 1)), PGRES_COMMAND_OK);
    assert_int_equal(PQresultStatus(of_db_pipeline_result(&p, 2)), PGRES_FATAL_ERROR);
    assert_int_equal(PQresultStatus(of_db_pipeline_result(&p, 3)), PGRES_PIPELINE_ABORTED);
    assert_int_equal(PQresultStatus(of_db_pipeline_result(&p, 4)), PGRES_PIPELINE_ABORTED);
    assert_true(of_db_ready(&t->db));

    /* The explicit transaction is still open and failed: after a ROLLBACK the
     * same connection works again. */
    of_db_pipeline_reset(&p);
    add_sql(&p, "rollback");
    assert_int_equal(run_pipeline(t, &p), OF_OK);
    of_db_pipeline_reset(&p);
    add_insert(&p, 1000);
    assert_int_equal(of_db_pipeline_add(&p, "it_count", 0, NULL), OF_OK);
    assert_int_equal(run_pipeline(t, &p), OF_OK);
    assert_int_equal(count_of(&p, 1), N_INSERTS + 1);
    assert_int_equal(of_db_session(&t->db), session1);
    assert_int_equal(table_count(t), N_INSERTS + 1);

    /* Kill the backend while a pipeline is in flight and two are queued. */
    of_db_pipeline_reset(&p);
    add_sql(&p, "select pg_backend_pid()");
    assert_int_equal(run_pipeline(t, &p), OF_OK);
    long pid = strtol(PQgetvalue(of_db_pipeline_result(&p, 0), 0, 0), NULL, 10);
    assert_true(pid > 0);
    uint64_t reconnects = t->db.reconnects;
    size_t states_before = t->n_states;

    of_db_pipeline_reset(&p);
    add_sql(&p, "select pg_sleep(20)");
    /* q: any session, so it waits for the new connection and runs there;
     * it uses a prepared statement, which must have been prepared again. */
    assert_int_equal(of_db_pipeline_add(&q, "it_count", 0, NULL), OF_OK);
    /* r: bound to the old session (the rest of a transaction begun there),
     * so it must fail instead of inserting on the new connection. */
    add_insert(&r, 5000);
    r.session = session1;
    done dp = {0}, dq = {0}, dr = {0};
    assert_int_equal(of_db_submit(&t->db, &p, on_pipeline, &dp), OF_OK);
    assert_int_equal(of_db_submit(&t->db, &q, on_pipeline, &dq), OF_OK);
    assert_int_equal(of_db_submit(&t->db, &r, on_pipeline, &dr), OF_OK);
    assert_int_equal(of_db_submit(&t->db, &q, on_pipeline, &dq), OF_ESTATE); /* queued twice */
    assert_false(of_db_idle(&t->db));
    /* Let the sleep reach the server, then terminate its backend. */
    for (int i = 0; i < 10; i++)
        uv_run(&t->loop, UV_RUN_ONCE);
    assert_true(t->db.in_flight);
    assert_false(dp.called);
    char sql[96];
    snprintf(sql, sizeof sql, "select pg_terminate_backend(%ld)::int", pid);
    assert_int_equal(admin_query(t, sql), 1);

    wait_for(t, &dp.called, "the killed pipeline");
    assert_int_equal(dp.calls, 1);
    assert_int_equal(dp.status, OF_ECONN);
    assert_string_equal(p.sqlstate, "08006");
    assert_true(strlen(p.error) > 0);
    assert_true(t->db.reconnects > reconnects);
    wait_for(t, &dq.called, "the pipeline queued behind the killed one");
    wait_for(t, &dr.called, "the pipeline bound to the old session");
    assert_int_equal(dq.calls, 1);
    assert_int_equal(dq.status, OF_OK);
    assert_int_equal(count_of(&q, 0), N_INSERTS + 1);
    assert_int_equal(dr.calls, 1);
    assert_int_equal(dr.status, OF_ECONN);
    assert_string_equal(r.sqlstate, "08006");
    /* The state callback saw the loss and the recovery, in that order. */
    long lost = find_state(t, states_before, OF_DB_DISCONNECTED);
    assert_true(lost >= 0);
    assert_true(find_state(t, (size_t)lost, OF_DB_CONNECTING) > lost);
    assert_true(find_state(t, (size_t)lost, OF_DB_READY) > lost);
    assert_true(of_db_ready(&t->db));
    uint64_t session2 = of_db_session(&t->db);
    assert_true(session2 > session1);
    /* r really did not run: no row 5000. */
    char where[128];
    snprintf(where, sizeof where, "select count(*) from %s where id = 5000", table);
    assert_int_equal(admin_query(t, where), 0);

    /* The new connection is another backend, and a pipeline bound to the
     * current session runs. */
    of_db_pipeline_reset(&p);
    add_sql(&p, "select pg_backend_pid()");
    p.session = session2;
    assert_int_equal(run_pipeline(t, &p), OF_OK);
    assert_true(strtol(PQgetvalue(of_db_pipeline_result(&p, 0), 0, 0), NULL, 10) != pid);
    of_db_pipeline_reset(&r);
    r.session = session2;
    add_insert(&r, 5001);
    assert_int_equal(run_pipeline(t, &r), OF_OK);
    assert_int_equal(table_count(t), N_INSERTS + 2);

    /* Kill the backend while the connection is idle: the loss is noticed
     * without any pipeline, and the connection comes back by itself. */
    of_db_pipeline_reset(&p);
    add_sql(&p, "select pg_backend_pid()");
    assert_int_equal(run_pipeline(t, &p), OF_OK);
    pid = strtol(PQgetvalue(of_db_pipeline_result(&p, 0), 0, 0), NULL, 10);
    states_before = t->n_states;
    snprintf(sql, sizeof sql, "select pg_terminate_backend(%ld)::int", pid);
    assert_int_equal(admin_query(t, sql), 1);
    uv_update_time(&t->loop);
    uint64_t deadline = uv_now(&t->loop) + WAIT_MS;
    while (of_db_session(&t->db) == session2) {
        uv_run(&t->loop, UV_RUN_ONCE);
        if (uv_now(&t->loop) > deadline)
            fail_msg("timed out waiting for the reconnect after an idle kill");
    }
    lost = find_state(t, states_before, OF_DB_DISCONNECTED);
    assert_true(lost >= 0);
    assert_true(find_state(t, (size_t)lost, OF_DB_READY) > lost);
    of_db_pipeline_reset(&q);
    assert_int_equal(of_db_pipeline_add(&q, "it_count", 0, NULL), OF_OK);
    assert_int_equal(run_pipeline(t, &q), OF_OK);
    assert_int_equal(count_of(&q, 0), N_INSERTS + 2);

    /* Close with one pipeline in flight and one queued: both are cancelled,
     * each exactly once, and the close callback runs. */
    of_db_pipeline_reset(&p);
    of_db_pipeline_reset(&q);
    add_sql(&p, "select 1");
    add_sql(&q, "select 2");
    p.session = 0;
    memset(&dp, 0, sizeof dp);
    memset(&dq, 0, sizeof dq);
    assert_int_equal(of_db_submit(&t->db, &p, on_pipeline, &dp), OF_OK);
    assert_int_equal(of_db_submit(&t->db, &q, on_pipeline, &dq), OF_OK);
    of_db_close(&t->db, on_closed);
    assert_int_equal(dp.calls, 1);
    assert_int_equal(dp.status, OF_ECANCELED);
    assert_int_equal(dq.calls, 1);
    assert_int_equal(dq.status, OF_ECANCELED);
    assert_int_equal(t->db.state, OF_DB_CLOSING);
    assert_int_equal(t->states[t->n_states - 1], OF_DB_CLOSING);
    of_db_pipeline_reset(&r);
    add_sql(&r, "select 3");
    assert_int_equal(of_db_submit(&t->db, &r, on_pipeline, &dr), OF_ESTATE);
    wait_for(t, &t->closed, "the close callback");
    assert_true(of_db_idle(&t->db));

    of_db_pipeline_free(&p);
    of_db_pipeline_free(&q);
    of_db_pipeline_free(&r);

    /* Nothing of the connection is left on the loop. */
    uv_close((uv_handle_t *)&t->tick, NULL);
    assert_int_equal(uv_run(&t->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&t->loop), 0);
}

int main(void)
{
    of_log_init("integration.db");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_db_lifecycle, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
