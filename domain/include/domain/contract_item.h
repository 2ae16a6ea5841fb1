/* contract_item.h: decoding a consumed event into the contract's typed data, for every worker.
 *
 * Each worker checks that its topic carries the event's type and decodes the
 * data into an of_contract_data hung on item->user; these two functions are
 * that decode callback's body and the matching item_free callback.
 *
 * Ownership: the of_contract_data is heap memory owned by the item until
 * of_contract_item_free(). */
#ifndef ORDERFLOW_CONTRACT_ITEM_H
#define ORDERFLOW_CONTRACT_ITEM_H

#include "orderflow/event.h"
#include "orderflow/worker.h"

/* Checks it->ev.type against topic (the unprefixed contract topic) and
 * decodes its data into it->user. Returns 0 or a negative of_event_code
 * with err set. */
int of_contract_item_decode(const char *topic, of_worker_item *it, of_event_error *err)
    __attribute__((warn_unused_result));
/* An of_worker_handler item_free: releases it->user. */
void of_contract_item_free(void *ctx, of_worker_item *it);

#endif
