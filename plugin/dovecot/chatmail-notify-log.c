/* Core log records -> Dovecot log lines and named events (for stats). */
#include "lib.h"
#include "str.h"
#include "chatmail-notify-log.h"

struct event_category event_category_chatmail_notify = {
	.name = "chatmail_notify",
};

struct event *chatmail_notify_event_create(struct event *parent)
{
	struct event *event = event_create(parent);

	event_add_category(event, &event_category_chatmail_notify);
	event_set_append_log_prefix(event, "chatmail-notify: ");
	return event;
}

static void log_record_fields(struct event_passthrough *e,
			      const cmn_event_t *record)
{
	if (record->addr != NULL)
		e->add_str("user", record->addr);
	if (record->token_hash != NULL)
		e->add_str("token_hash", record->token_hash);
	if (record->http_status >= 0)
		e->add_int("status", record->http_status);
	if (record->attempt >= 0)
		e->add_int("attempt", record->attempt);
	if (record->count >= 0)
		e->add_int("count", record->count);
}

/* So that a grep for an address or a token hash finds every line of its
   story, even where the core's message does not name them. */
static const char *log_record_line(const cmn_event_t *record)
{
	const char *message = record->message == NULL ? "" : record->message;
	string_t *line = t_str_new(128);

	str_append(line, message);
	if (record->addr != NULL && strstr(message, record->addr) == NULL)
		str_printfa(line, " (user=%s)", record->addr);
	if (record->token_hash != NULL && strstr(message, record->token_hash) == NULL)
		str_printfa(line, " (token=%s)", record->token_hash);
	return str_c(line);
}

void chatmail_notify_log_record(struct event *event, const cmn_event_t *record)
{
	struct event_passthrough *e = event_create_passthrough(event);
	const char *message = log_record_line(record);

	if (record->name != NULL)
		e->set_name(record->name);
	log_record_fields(e, record);
	switch (record->level) {
	case CMN_LOG_DEBUG:
		e_debug(e->event(), "%s", message);
		break;
	case CMN_LOG_INFO:
		e_info(e->event(), "%s", message);
		break;
	case CMN_LOG_WARNING:
		e_warning(e->event(), "%s", message);
		break;
	case CMN_LOG_ERROR:
	default:
		e_error(e->event(), "%s", message);
		break;
	}
}

void chatmail_notify_log_record_func(void *ctx, const cmn_event_t *record)
{
	chatmail_notify_log_record(ctx, record);
}
