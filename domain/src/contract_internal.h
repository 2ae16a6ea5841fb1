/* contract_internal.h: what the contract's files share (status lists for reasons, encoder helpers);
 * not installed. */
#ifndef ORDERFLOW_CONTRACT_INTERNAL_H
#define ORDERFLOW_CONTRACT_INTERNAL_H

#include "domain/contract.h"

#define ORDER_STATUS_LIST                                                                          \
    "CREATED, INVENTORY_RESERVED, CONFIRMED, REJECTED, PAID, SHIPPED, DELIVERED, CANCELLED, "      \
    "RETURNED, PARTIALLY_RETURNED"
#define UPDATE_STATUS_LIST "PAID, SHIPPED, DELIVERED, CANCELLED, RETURNED, PARTIALLY_RETURNED"
#define RETURN_STATUS_LIST                                                                         \
    "INITIATED, REJECTED, RETURN_PROCESSED, REFUND_INITIATED, REFUND_PROCESSED, REFUND_COMPLETED"

bool ct_terminated(const char *buf, size_t size);
int ct_no_memory(cJSON **obj, of_event_error *err);
int ct_bad_string(const char *name, of_event_error *err);
bool ct_add_uuid(cJSON *obj, const char *name, const char *uuid);

#endif
