/* return_machine.h: the return and refund machine (contract section 4) as one table.
 *
 * One execution, ReturnRefund, per return: InitiateReturn creates the return
 * (INITIATED or REJECTED); ProcessReturn, InitiateRefund, ProcessRefund and
 * RefundCompleted follow automatically, each triggered by the previous step's
 * return.status.changed. A return's scope is its order: the executions row
 * carries both ids. The states are the contract's return statuses. The table
 * is shared by the return-requested worker and orderctl. */
#ifndef ORDERFLOW_DOMAIN_RETURN_MACHINE_H
#define ORDERFLOW_DOMAIN_RETURN_MACHINE_H

#include "domain/contract.h"
#include "orderflow/machine.h"

/* Reasons carried by REJECTED returns. */
#define OF_REASON_ORDER_NOT_DELIVERED   "ORDER_NOT_DELIVERED"
#define OF_REASON_RETURN_WINDOW_EXPIRED "RETURN_WINDOW_EXPIRED"
#define OF_REASON_UNKNOWN_ITEM          "UNKNOWN_ITEM"
#define OF_REASON_QUANTITY_EXCEEDED     "QUANTITY_EXCEEDED"

typedef enum of_return_trigger {
    OF_RETURN_T_AUTO = OF_TRIGGER_AUTO,
    OF_RETURN_T_REQUESTED, /* return.requested */
    OF_RETURN_TRIGGER_COUNT,
} of_return_trigger;

typedef enum of_return_step_id {
    OF_RETURN_STEP_INITIATE_RETURN,
    OF_RETURN_STEP_PROCESS_RETURN,
    OF_RETURN_STEP_INITIATE_REFUND,
    OF_RETURN_STEP_PROCESS_REFUND,
    OF_RETURN_STEP_REFUND_COMPLETED,
    OF_RETURN_STEP_COUNT,
} of_return_step_id;

typedef enum of_return_execution {
    OF_RETURN_X_NONE = OF_EXEC_NONE,
    OF_RETURN_X_RETURN_REFUND, /* ReturnRefund */
    OF_RETURN_X_COUNT,
} of_return_execution;

extern const of_machine of_return_machine;

/* What a return step hands to the status event (of_step_ctx.out of the
 * return machine's steps): the refund amount once it is known. */
typedef struct of_return_step {
    bool has_refund;      /* refund_cents is known */
    int64_t refund_cents; /* refund amount */
} of_return_step;

#endif
