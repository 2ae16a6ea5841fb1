/* test_prune.c: every retention target's statements take the parameters the pruner and orderctl
 * prune give them, and never touch what must be kept. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain/retention.h"
#include "orderflow/prune.h"

static const of_prune_target *const targets[] = {
    &of_prune_inbox,      &of_prune_outbox,    &of_prune_dead_letters,
    &of_prune_executions, &of_prune_deadlines,
};
#define N_TARGETS (sizeof targets / sizeof targets[0])

/* The highest $n in sql (PostgreSQL wants each of $1..$n given, and no more). */
static int max_param(const char *sql)
{
    int max = 0;
    for (const char *p = strchr(sql, '$'); p != NULL; p = strchr(p + 1, '$')) {
        int n = atoi(p + 1);
        if (isdigit((unsigned char)p[1]) && n > max)
            max = n;
    }
    return max;
}

static void test_parameters_match(void **state)
{
    const char *values[3];
    for (size_t i = 0; i < N_TARGETS; i++) {
        const of_prune_target *t = targets[i];
        int scoped = t->scopes_sql != NULL;
        assert_int_equal(of_prune_params(t, "w", "1000", "10", values), 2 + scoped);
        assert_int_equal(max_param(t->delete_sql), 2 + scoped);
        assert_int_equal(of_prune_params(t, "w", "1000", NULL, values), 1 + scoped);
        assert_int_equal(max_param(t->count_sql), 1 + scoped);
        assert_int_equal(of_prune_params(t, "w", NULL, NULL, values), scoped);
        assert_int_equal(max_param(t->oldest_sql), scoped);
        if (scoped) {
            assert_int_equal(max_param(t->scopes_sql), 0);
            assert_string_equal(values[0], "w"); /* the scope comes first */
        }
    }
}

/* The delete and the dry run share their condition; each batch is bounded
 * and skips rows another transaction holds. */
static void test_delete_shape(void **state)
{
    for (size_t i = 0; i < N_TARGETS; i++) {
        const of_prune_target *t = targets[i];
        const char *due = strstr(t->count_sql, " where ");
        assert_non_null(due);
        assert_non_null(strstr(t->delete_sql, due));
        assert_non_null(strstr(t->delete_sql, " for update skip locked"));
        assert_non_null(strstr(t->delete_sql, " limit $"));
        assert_true(strncmp(t->delete_sql, "delete from ", 12) == 0);
        assert_true(strncmp(t->delete_sql + 12, t->table, strlen(t->table)) == 0);
    }
}

/* Rows that must stay are outside every condition: unpublished outbox rows,
 * dead letters never redriven, pending deadlines, running executions. The
 * conditions compare the column that is NULL for those rows. */
static void test_keeps(void **state)
{
    assert_non_null(strstr(of_prune_outbox.count_sql, "published_at < "));
    assert_non_null(strstr(of_prune_dead_letters.count_sql, "redriven_at < "));
    assert_non_null(strstr(of_prune_executions.count_sql, "stopped_at < "));
    assert_non_null(strstr(of_prune_deadlines.count_sql, "coalesce(fired_at, cancelled_at) < "));
    assert_non_null(strstr(of_prune_inbox.count_sql, "consumer = $1"));
    assert_non_null(strstr(of_prune_dead_letters.count_sql, "worker = $1"));
}

static void test_settings_check(void **state)
{
    of_prune_settings s = {60000, 1000, 14 * OF_PRUNE_DAY_MS, OF_PRUNE_DAY_MS, 30 * OF_PRUNE_DAY_MS,
                           0};
    char err[160];
    assert_int_equal(of_prune_settings_check(&s, err, sizeof err), 0);
    s.history = OF_PRUNE_HOUR_MS;
    assert_int_equal(of_prune_settings_check(&s, err, sizeof err), 0);
    s.history = OF_PRUNE_HOUR_MS - 1;
    assert_int_equal(of_prune_settings_check(&s, err, sizeof err), OF_EINVAL);
    assert_non_null(strstr(err, "retention-history"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parameters_match),
        cmocka_unit_test(test_delete_shape),
        cmocka_unit_test(test_keeps),
        cmocka_unit_test(test_settings_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
