/* return_machine.h: the return and refund machine (contract section 4) as one table.
 *
 * One execution, ReturnRefund, per return: InitiateReturn creates the return
 * (INITIATED or REJECTED); ProcessReturn, InitiateRefund, ProcessRefund and
 * RefundCompleted follow automatically, each triggered by the previous step's
 * return.status.changed. The table is shared by the return-requested worker
 * and orderctl. */
#ifndef ORDERFLOW_RETURN_MACHINE_H
#define ORDERFLOW_RETURN_MACHINE_H

#include "orderflow/machine.h"

/* Reasons carried by REJECTED returns. */
#define OF_REASON_ORDER_NOT_DELIVERED   "ORDER_NOT_DELIVERED"
#define OF_REASON_RETURN_WINDOW_EXPIRED "RETURN_WINDOW_EXPIRED"
#define OF_REASON_UNKNOWN_ITEM          "UNKNOWN_ITEM"
#define OF_REASON_QUANTITY_EXCEEDED     "QUANTITY_EXCEEDED"

extern const of_machine of_return_machine;

/* Statements of_machine_apply() needs for returns. */
#define OF_RETURN_MACHINE_STMTS OF_MACHINE_STMTS("return", "returns")

/* The refund amount a step computed, carried into return.status.changed. */
typedef struct of_return_step {
    bool has_refund;      /* refund_cents is known */
    int64_t refund_cents; /* refund amount */
    void *worker;         /* worker-specific state */
} of_return_step;

#endif
