/* error.c: names and classes of the error codes in error.h. */
#include "orderflow/error.h"

#include "orderflow/event.h"

const char *of_strerror(int code)
{
    switch (code) {
    case OF_OK:
        return "success";
    case OF_ENOMEM:
        return "out of memory";
    case OF_EINVAL:
        return "invalid argument or value";
    case OF_ESTATE:
        return "not allowed in the current state";
    case OF_ECONN:
        return "connection lost";
    case OF_ESQL:
        return "sql command failed";
    case OF_ECANCELED:
        return "cancelled";
    case OF_ETRANSIENT:
        return "temporarily unavailable";
    case OF_EILLEGAL:
        return "no such transition";
    case OF_ERANGE:
        return "value outside the contract's limits";
    case OF_ESTART:
        return "could not start";
    default:
        break;
    }
    if (code < 0 && code >= OF_EVENT_ERR_NO_MEMORY)
        return of_event_code_name(code);
    return "unknown error";
}

bool of_err_transient(int code)
{
    return code == OF_ENOMEM || code == OF_ECONN || code == OF_ECANCELED || code == OF_ETRANSIENT ||
           code == OF_EVENT_ERR_NO_MEMORY;
}
