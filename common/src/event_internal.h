/* event_internal.h: what the CloudEvents files share (attribute checks, character classes, times);
 * not installed.
 *
 * The checks take the bytes (not NUL terminated), a label for the reason
 * such as header "ce_id", and copy the accepted value into dst. */
#ifndef ORDERFLOW_EVENT_INTERNAL_H
#define ORDERFLOW_EVENT_INTERNAL_H

#include "orderflow/event.h"

#define CT_JSON       "application/json"
#define CT_CE_JSON    "application/cloudevents+json"
#define CT_CE_BATCH   "application/cloudevents-batch+json"
#define ID_CHARS_TEXT "[A-Za-z0-9._:-]"

void ev_error_clear(of_event_error *err);
bool ev_is_id_char(unsigned char c);
bool ev_is_type_char(unsigned char c);
bool ev_is_printable_ascii(unsigned char c);
int ev_time_parse_n(const char *s, size_t len, int64_t *unix_ms);
void ev_copy_text(char *dst, const char *src, size_t len);
int ev_check_nul(const char *label, const char *p, size_t len, of_event_error *err);
int ev_check_id(const char *label, const char *p, size_t len, char *dst, of_event_error *err);
int ev_check_type(const char *label, const char *p, size_t len, char *dst, of_event_error *err);
int ev_check_printable(const char *label, const char *p, size_t len, size_t max, char *dst,
                       of_event_error *err);
int ev_check_specversion(const char *label, const char *p, size_t len, char *dst,
                         of_event_error *err);
int ev_check_time(const char *label, const char *p, size_t len, char *dst, of_event_error *err);
/* Parses value[0..len) as one JSON text into *out (event_json.c); what names
 * it in the reason. Returns 0 or a negative of_event_code with err set. */
int ev_parse_json(const void *value, size_t len, const char *what, cJSON **out,
                  of_event_error *err);
bool ev_media_type_is(const char *p, size_t len, const char *want);
int ev_check_content_type(const char *label, const char *p, size_t len, char *dst,
                          of_event_error *err);

#endif
