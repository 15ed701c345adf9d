#ifndef CHATMAIL_NOTIFY_LOG_H
#define CHATMAIL_NOTIFY_LOG_H

#include "chatmail-notify.h"

struct event;

extern struct event_category event_category_chatmail_notify;

/* A child event of `parent` in category chatmail_notify, with the log
   prefix "chatmail-notify: ". */
struct event *chatmail_notify_event_create(struct event *parent);

/* Logs a core record through `event` (a chatmail_notify event): the line at
   the record's level and, when the record has a name, a named event with
   its fields (user, token_hash, status, attempt, count). */
void chatmail_notify_log_record(struct event *event, const cmn_event_t *record);

/* cmn_event_func adapter: `ctx` is the struct event *. */
void chatmail_notify_log_record_func(void *ctx, const cmn_event_t *record);

#endif
