/* error.h: the one error convention of orderflow: 0, or a negative of_err.
 *
 * Every function that can fail returns OF_OK (0) or one negative code from
 * this list; of_strerror() names it and of_err_transient() says whether the
 * same call may succeed later. The input-rejection codes of event.h
 * (of_event_code, -1 to -16) are the same family: a negative value below is
 * never reused for anything else.
 *
 * Transient means "the same input can succeed later": memory, a lost
 * connection, a serialization failure, a lock or broker that is busy. A
 * worker retries those (boundedly); everything else is permanent and the
 * event at fault is dead-lettered. A failed SQL command (OF_ESQL) is
 * classified by its SQLSTATE with of_db_sqlstate_transient(). */
#ifndef ORDERFLOW_ERROR_H
#define ORDERFLOW_ERROR_H

#include <stdbool.h>

/* Codes from -200 down: the event codes take -1 to -16 (of_event_code), and
 * libuv's negative errno values (-1 to about -140, and -3000 for getaddrinfo)
 * pass through the HTTP server's calls. */
typedef enum of_err {
    OF_OK = 0,
    OF_ENOMEM = -200,     /* out of memory (transient) */
    OF_EINVAL = -201,     /* an argument or a value is not acceptable (permanent) */
    OF_ESTATE = -202,     /* not allowed now: closing, in use, or inconsistent data (permanent) */
    OF_ECONN = -203,      /* a connection broke before the work finished (transient) */
    OF_ESQL = -204,       /* a SQL command failed: see its SQLSTATE */
    OF_ECANCELED = -205,  /* the work was cancelled by a close (transient) */
    OF_ETRANSIENT = -206, /* a dependency is busy or away: retry later (transient) */
    OF_EILLEGAL = -207,   /* the state machine has no such transition (permanent) */
    OF_ERANGE = -208,     /* a computed value is outside the contract's limits (permanent) */
    OF_ESTART = -209,     /* a server could not start: port in use, no permission */
} of_err;

/* A short lowercase description of code ("out of memory"), for any negative
 * of_err or of_event_code; "unknown error" otherwise. Static storage. */
const char *of_strerror(int code);

/* True when code is worth retrying with the same input. */
bool of_err_transient(int code);

#endif
