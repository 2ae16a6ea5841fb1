/* backpressure.c: a worker over its limits stops taking batches until it is back under them.
 *
 * Two measures, each against a limit (0 turns it off):
 *   - the time Postgres took for the last committed batch transaction (load
 *     and write pipelines), against pause-above-txn: a slow database;
 *   - the unpublished outbox rows (orderflow_outbox_backlog, refreshed every
 *     5 s), against pause-above-backlog: a broker that does not keep up.
 * Over a limit the worker holds: no new batch, fetching paused with the
 * group served (the consumer's busy mode, kafka.h), so the records wait in
 * Kafka instead of piling up as retries or outbox rows. Nothing is dropped:
 * what was fetched is held and handed out after the resume, in order.
 *
 * Resuming has hysteresis. The backlog resumes once it is below half its
 * limit. The transaction time can only be measured by running one: after a
 * cool-down (1 s, doubling up to 30 s while it stays slow) batches run again
 * as probes; the first committed one decides: below half the limit the
 * worker is running again, else it holds for the next, longer cool-down.
 *
 * State: orderflow_paused{reason} (1 while holding for that reason),
 * orderflow_pauses_total{reason}, and a line on /readyz (the worker stays
 * ready: holding is its normal answer to overload, not a fault). */
#include "worker_internal.h"

#include "orderflow/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#define COOLDOWN_MIN_MS 1000
#define COOLDOWN_MAX_MS 30000

struct of_worker_bp {
    bool txn_paused;      /* the last transaction took longer than pause-above-txn */
    bool probing;         /* cool-down over: batches run until one commits and decides */
    bool backlog_paused;  /* the outbox backlog is above pause-above-backlog */
    uint64_t cooldown_ms; /* the current cool-down */
    uint64_t probe_at;    /* uv_now() when the cool-down ends */
    double last_txn_ms;   /* time of the transaction that paused or probed */
    double backlog;       /* last backlog seen */
    uv_timer_t timer;     /* ends the cool-down */
    of_metric *paused;    /* orderflow_paused{reason} */
    of_metric *pauses;    /* orderflow_pauses_total{reason} */
};

static const char *const r_txn[] = {"transaction_time"};
static const char *const r_backlog[] = {"outbox_backlog"};

int of_bp_init(of_worker *w)
{
    static const char *const l_reason[] = {"reason"};
    struct of_worker_bp *bp = calloc(1, sizeof *bp);
    if (bp == NULL)
        return OF_ENOMEM;
    w->bp = bp;
    bp->cooldown_ms = COOLDOWN_MIN_MS;
    bp->paused = of_metrics_gauge(&w->metrics, "orderflow_paused",
                                  "1 while the worker takes no batch because it is over a limit "
                                  "(pause-above-txn, pause-above-backlog), by reason.",
                                  l_reason, 1);
    bp->pauses = of_metrics_counter(&w->metrics, "orderflow_pauses_total",
                                    "Times the worker stopped taking batches because it was over "
                                    "a limit, by reason.",
                                    l_reason, 1);
    if (bp->paused == NULL || bp->pauses == NULL)
        return OF_ENOMEM;
    of_metric_set(bp->paused, r_txn, 0);
    of_metric_set(bp->paused, r_backlog, 0);
    of_metric_add(bp->pauses, r_txn, 0);
    of_metric_add(bp->pauses, r_backlog, 0);
    uv_timer_init(w->loop, &bp->timer);
    bp->timer.data = w;
    return 0;
}

bool of_bp_holding(const of_worker *w)
{
    const struct of_worker_bp *bp = w->bp;
    return bp != NULL && ((bp->txn_paused && !bp->probing) || bp->backlog_paused);
}

/* Back to taking batches (when nothing else holds). */
static void release(of_worker *w)
{
    if (!of_bp_holding(w) && !w->busy && !w->stopping) {
        of_consumer_set_busy(&w->consumer, false);
        of_worker_batch_done(w); /* takes the next batch */
    }
}

static void on_cooldown(uv_timer_t *t)
{
    of_worker *w = t->data;
    struct of_worker_bp *bp = w->bp;
    bp->probing = true;
    of_log_info("backpressure: cool-down of %" PRIu64 " ms over; probing with the next batch",
                bp->cooldown_ms);
    release(w);
}

/* Holds for the cool-down, then probes. */
static void hold_txn(of_worker *w, double txn_ms)
{
    struct of_worker_bp *bp = w->bp;
    if (bp->probing)
        bp->cooldown_ms =
            bp->cooldown_ms * 2 > COOLDOWN_MAX_MS ? COOLDOWN_MAX_MS : bp->cooldown_ms * 2;
    else
        bp->cooldown_ms = COOLDOWN_MIN_MS;
    if (!bp->txn_paused) {
        of_metric_set(bp->paused, r_txn, 1);
        of_metric_add(bp->pauses, r_txn, 1);
    }
    bp->txn_paused = true;
    bp->probing = false;
    bp->last_txn_ms = txn_ms;
    bp->probe_at = uv_now(w->loop) + bp->cooldown_ms;
    uv_timer_start(&bp->timer, on_cooldown, bp->cooldown_ms, 0);
    of_log_warn("backpressure: a transaction took %.0f ms (pause-above-txn %" PRId64
                " ms); taking no batch for %" PRIu64 " ms",
                txn_ms, w->cfg.pause_txn, bp->cooldown_ms);
}

void of_bp_committed(of_worker *w, double txn_ms)
{
    struct of_worker_bp *bp = w->bp;
    double limit = (double)w->cfg.pause_txn;
    if (bp == NULL || limit <= 0)
        return;
    if (!bp->txn_paused) {
        if (txn_ms > limit)
            hold_txn(w, txn_ms);
        return;
    }
    /* A probe: below half the limit is back to normal. */
    if (txn_ms >= limit / 2) {
        hold_txn(w, txn_ms);
        return;
    }
    bp->txn_paused = bp->probing = false;
    bp->cooldown_ms = COOLDOWN_MIN_MS;
    of_metric_set(bp->paused, r_txn, 0);
    of_log_info("backpressure: a transaction took %.0f ms, below half of pause-above-txn; "
                "taking batches again",
                txn_ms);
}

void of_bp_backlog(of_worker *w, double backlog)
{
    struct of_worker_bp *bp = w->bp;
    double limit = (double)w->cfg.pause_backlog;
    if (bp == NULL || limit <= 0)
        return;
    bp->backlog = backlog;
    if (!bp->backlog_paused && backlog > limit) {
        bp->backlog_paused = true;
        of_metric_set(bp->paused, r_backlog, 1);
        of_metric_add(bp->pauses, r_backlog, 1);
        of_log_warn("backpressure: %.0f unpublished outbox rows (pause-above-backlog %" PRId64
                    "); taking no batch until fewer than half that",
                    backlog, w->cfg.pause_backlog);
        /* The batch in progress (if any) ends normally; none follows. */
    } else if (bp->backlog_paused && backlog < limit / 2) {
        bp->backlog_paused = false;
        of_metric_set(bp->paused, r_backlog, 0);
        of_log_info("backpressure: %.0f unpublished outbox rows, below half of "
                    "pause-above-backlog; taking batches again",
                    backlog);
        release(w);
    }
}

const char *of_bp_state(const of_worker *w, char *buf, size_t size)
{
    const struct of_worker_bp *bp = w->bp;
    int n = 0;
    if (bp == NULL || (!bp->txn_paused && !bp->backlog_paused))
        return NULL;
    buf[0] = '\0';
    if (bp->txn_paused) {
        uint64_t now = uv_now(w->loop);
        n = snprintf(buf, size,
                     "paused: a transaction took %.0f ms, above pause-above-txn %" PRId64
                     " ms (%s)",
                     bp->last_txn_ms, w->cfg.pause_txn,
                     bp->probing          ? "probing"
                     : now < bp->probe_at ? "cooling down"
                                          : "probe due");
    }
    if (bp->backlog_paused && n >= 0 && (size_t)n < size)
        snprintf(buf + n, size - (size_t)n,
                 "%spaused: %.0f unpublished outbox rows, above pause-above-backlog %" PRId64,
                 n > 0 ? "; " : "", bp->backlog, w->cfg.pause_backlog);
    return buf;
}

void of_bp_stop(of_worker *w)
{
    if (w->bp != NULL)
        uv_timer_stop(&w->bp->timer);
}

void of_bp_close(of_worker *w, void (*close_handle)(of_worker *w, uv_handle_t *h))
{
    if (w->bp != NULL && w->bp->timer.loop != NULL)
        close_handle(w, (uv_handle_t *)&w->bp->timer);
}

void of_bp_free(of_worker *w)
{
    free(w->bp);
    w->bp = NULL;
}
