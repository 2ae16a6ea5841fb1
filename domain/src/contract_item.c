/* contract_item.c: the shared decode and release of a worker item's contract data. */
#include "domain/contract_item.h"

#include "domain/contract.h"

#include <stdlib.h>

int of_contract_item_decode(const char *topic, of_worker_item *it, of_event_error *err)
{
    of_contract_data *d;
    int rc = of_contract_check_type(topic, it->ev.type, err);
    if (rc != 0)
        return rc;
    d = malloc(of_contract_data_size(it->ev.type));
    if (d == NULL)
        return of_event_error_set(err, OF_EVENT_ERR_NO_MEMORY, "out of memory");
    it->user = d;
    return of_contract_decode(&it->ev, d, err);
}

void of_contract_item_free(void *ctx, of_worker_item *it)
{
    (void)ctx;
    free(it->user);
    it->user = NULL;
}
