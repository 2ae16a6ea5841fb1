/* order_machine.h: the order status machine (contract section 4) as one table.
 *
 * The table is shared by the order-created worker (creation), the
 * order-status worker (every later step) and orderctl (diagrams). Its rows
 * name the Step Functions executions they advance: OrderProcess
 * (CreateOrder, UpdateInventory, OrderCompleted) and OrderUpdate (the
 * lifecycle after confirmation). Workers bind the steps they run to
 * functions with of_step_impl lists. */
#ifndef ORDERFLOW_ORDER_MACHINE_H
#define ORDERFLOW_ORDER_MACHINE_H

#include "orderflow/machine.h"

/* Trigger of the payment deadline (not an upstream status). */
#define OF_TRIGGER_PAYMENT_TIMEOUT "PAYMENT_TIMEOUT"

/* Reasons carried by REJECTED and CANCELLED orders. */
#define OF_REASON_UNKNOWN_CUSTOMER "UNKNOWN_CUSTOMER"
#define OF_REASON_UNKNOWN_PRODUCT  "UNKNOWN_PRODUCT"
#define OF_REASON_OUT_OF_STOCK     "OUT_OF_STOCK"
#define OF_REASON_INVALID          "INVALID"
#define OF_REASON_PAYMENT_TIMEOUT  "PAYMENT_TIMEOUT"

extern const of_machine of_order_machine;

/* Statements of_machine_apply() needs for orders; list them in the worker's statements. */
#define OF_ORDER_MACHINE_STMTS OF_MACHINE_STMTS("order", "orders")

/* The of_step_ctx user data every order step gets: what the event was and
 * the order row as loaded (and updated in memory as the batch advances). */
typedef struct of_order_state {
    char id[37];          /* order id */
    char status[32];      /* current status */
    int version;          /* current version */
    char correlation[65]; /* correlation id (ce_id of order.created) */
    char customer_id[65]; /* customer */
    void *worker;         /* worker-specific extra state */
} of_order_state;

#endif
