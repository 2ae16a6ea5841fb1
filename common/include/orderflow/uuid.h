/* uuid.h: random (version 4) and time-ordered (version 7) UUIDs as text, and the random bytes
 * behind them.
 *
 * Version 7 ids sort by creation time, which keeps b-tree inserts of new
 * entities, events and outbox rows at the right edge of their indexes. */
#ifndef ORDERFLOW_UUID_H
#define ORDERFLOW_UUID_H

#include <stdbool.h>
#include <stddef.h>

#define OF_UUID_STRLEN 36 /* "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" without the NUL */

/* Writes a version 7 UUID and a NUL into out (at least 37 bytes). Returns 0
 * or -1 when the kernel's random source failed. */
int of_uuid_v7(char out[OF_UUID_STRLEN + 1]) __attribute__((warn_unused_result));
/* Writes a version 4 UUID; same contract as of_uuid_v7(). */
int of_uuid_v4(char out[OF_UUID_STRLEN + 1]) __attribute__((warn_unused_result));
/* True when text is a canonical UUID (8-4-4-4-12 hex digits, any case). */
bool of_uuid_valid(const char *text);
/* Fills buf[0..len) from the kernel's random source (getrandom), the one
 * source of every random id (UUIDs, trace and span ids). Returns 0 or
 * OF_ETRANSIENT when it failed. */
int of_random_bytes(void *buf, size_t len) __attribute__((warn_unused_result));

#endif
