/* http_internal.h: what http.c (daemon, routes) and http_api.c (the API handler's requests)
 * share; not installed. */
#ifndef ORDERFLOW_HTTP_INTERNAL_H
#define ORDERFLOW_HTTP_INTERNAL_H

#include "orderflow/http.h"

#include <microhttpd.h>

/* What a route's request keeps in its con_cls (not an of_http_request). */
extern int of_http_route_started;

/* libmicrohttpd's access handler for a request no route takes (see on_request). */
enum MHD_Result of_http_api_request(of_http *h, struct MHD_Connection *conn, const char *url,
                                    const char *method, const char *upload_data,
                                    size_t *upload_data_size, void **con_cls);
/* MHD_OPTION_NOTIFY_COMPLETED: the connection is done with the request. */
void of_http_api_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                           enum MHD_RequestTerminationCode code);
/* At close: every request still waiting for its answer gets 503. */
void of_http_api_close(of_http *h);
/* h->resume_timer's callback: runs the daemon after a late answer resumed a connection. */
void of_http_on_resume(uv_timer_t *t);

#endif
