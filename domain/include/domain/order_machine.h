/* order_machine.h: the order status machine (contract section 4) as one table.
 *
 * The table is shared by the order-created worker (creation), the
 * order-status worker (every later step) and orderctl (diagrams). Its states
 * are the contract's order statuses (of_order_status); its triggers, steps
 * and executions are the enumerations below. Its rows name the Step
 * Functions executions they advance: OrderProcess (CreateOrder,
 * UpdateInventory, OrderCompleted) and OrderUpdate (the lifecycle after
 * confirmation). Workers bind the steps they run with an of_step_impl array
 * indexed by of_order_step. */
#ifndef ORDERFLOW_DOMAIN_ORDER_MACHINE_H
#define ORDERFLOW_DOMAIN_ORDER_MACHINE_H

#include "domain/contract.h"
#include "orderflow/machine.h"

/* Reasons carried by REJECTED and CANCELLED orders. */
#define OF_REASON_UNKNOWN_CUSTOMER "UNKNOWN_CUSTOMER"
#define OF_REASON_UNKNOWN_PRODUCT  "UNKNOWN_PRODUCT"
#define OF_REASON_OUT_OF_STOCK     "OUT_OF_STOCK"
#define OF_REASON_PAYMENT_TIMEOUT  "PAYMENT_TIMEOUT"

/* What moves an order: creation, its own status event (auto), an
 * order.status.update status, or the payment deadline. */
typedef enum of_order_trigger {
    OF_ORDER_T_AUTO = OF_TRIGGER_AUTO,
    OF_ORDER_T_CREATED,            /* order.created */
    OF_ORDER_T_PAID,               /* order.status.update PAID */
    OF_ORDER_T_SHIPPED,            /* ... SHIPPED */
    OF_ORDER_T_DELIVERED,          /* ... DELIVERED */
    OF_ORDER_T_CANCELLED,          /* ... CANCELLED */
    OF_ORDER_T_RETURNED,           /* ... RETURNED (from the return machine) */
    OF_ORDER_T_PARTIALLY_RETURNED, /* ... PARTIALLY_RETURNED */
    OF_ORDER_T_PAYMENT_TIMEOUT,    /* order.deadline.expired PAYMENT */
    OF_ORDER_TRIGGER_COUNT,
} of_order_trigger;

typedef enum of_order_step {
    OF_ORDER_STEP_CREATE_ORDER,
    OF_ORDER_STEP_UPDATE_INVENTORY,
    OF_ORDER_STEP_ORDER_COMPLETED,
    OF_ORDER_STEP_RECORD_PAYMENT,
    OF_ORDER_STEP_CANCEL_ORDER,
    OF_ORDER_STEP_PAYMENT_TIMEOUT,
    OF_ORDER_STEP_RECORD_SHIPMENT,
    OF_ORDER_STEP_RECORD_DELIVERY,
    OF_ORDER_STEP_APPLY_RETURN,
    OF_ORDER_STEP_COUNT,
} of_order_step;

typedef enum of_order_execution {
    OF_ORDER_X_NONE = OF_EXEC_NONE,
    OF_ORDER_X_PROCESS, /* OrderProcess */
    OF_ORDER_X_UPDATE,  /* OrderUpdate */
    OF_ORDER_X_COUNT,
} of_order_execution;

extern const of_machine of_order_machine;

/* The trigger of an order.status.update status (one of
 * of_order_status_is_update()), or -1. */
int of_order_update_trigger(of_order_status status);

#endif
