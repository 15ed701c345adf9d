/* chatmail-notify-sender: the Dovecot service that hosts the sender.

   Started (and restarted when it dies) by Dovecot's master:

     service chatmail-notify-sender {
       executable = /usr/lib/dovecot/chatmail-notify-sender
       process_min_avail = 1
       process_limit = 1
     }

   It reads the sender's settings (chatmail_notify_* in plugin {}, global
   configuration only), starts the core's sender threads and turns their
   log records into Dovecot log lines and named events on this, the main,
   thread. A bad setting is logged once and the process then idles: an
   exit would only make the master restart and throttle it. SIGTERM (or
   `doveadm stop`) stops the threads within a bounded time; unsent items
   stay in the spool for the next sender. */
#include "lib.h"
#include "array.h"
#include "ioloop.h"
#include "restrict-access.h"
#include "settings-parser.h"
#include "master-service.h"
#include "master-service-settings.h"
#include "chatmail-notify-settings.h"
#include "chatmail-notify-log.h"

#define SENDER_STOP_TIMEOUT_MS 5000
#define SENDER_START_RETRY_MSECS (10 * 1000)

struct sender_service_settings {
	ARRAY(const char *) plugin_envs;
};

static const struct setting_define sender_service_setting_defines[] = {
	{ .type = SET_STRLIST, .key = "plugin",
	  .offset = offsetof(struct sender_service_settings, plugin_envs) },
	SETTING_DEFINE_LIST_END
};

static const struct sender_service_settings sender_service_default_settings = {
	.plugin_envs = ARRAY_INIT,
};

static const struct setting_parser_info sender_service_setting_parser_info = {
	.module_name = "chatmail-notify-sender",
	.defines = sender_service_setting_defines,
	.defaults = &sender_service_default_settings,
	.type_offset = SIZE_MAX,
	.struct_size = sizeof(struct sender_service_settings),
	.parent_offset = SIZE_MAX,
};

struct sender_service {
	pool_t pool;
	struct event *event;
	cmn_sender_config_t config;
	cmn_sender_t *sender;
	struct io *io_events;
	struct timeout *to_start;
};

/* plugin {} as key, value pairs */
static const char *plugin_getenv(const char *name, void *context)
{
	const ARRAY_TYPE(const_string) *envs = context;
	const char *const *kv;
	unsigned int i, count;

	if (!array_is_created(envs))
		return NULL;
	kv = array_get(envs, &count);
	for (i = 0; i + 1 < count; i += 2) {
		if (strcmp(kv[i], name) == 0)
			return kv[i + 1];
	}
	return NULL;
}

static void sender_events_drain(struct sender_service *service)
{
	cmn_sender_drain_events(service->sender, chatmail_notify_log_record_func,
				service->event);
}

static void sender_start(struct sender_service *service)
{
	char *error = NULL;

	timeout_remove(&service->to_start);
	service->sender = cmn_sender_start(&service->config, &error);
	if (service->sender == NULL) {
		e_error(service->event, "sender failed to start (retrying in %u s): %s",
			SENDER_START_RETRY_MSECS / 1000, error);
		cmn_free(error);
		service->to_start = timeout_add(SENDER_START_RETRY_MSECS,
						sender_start, service);
		return;
	}
	service->io_events = io_add(cmn_sender_event_fd(service->sender), IO_READ,
				    sender_events_drain, service);
	e_info(service->event, "sender started: spool %s, gateway %s",
	       service->config.spool_dir, service->config.url);
}

static void sender_stop(struct sender_service *service)
{
	timeout_remove(&service->to_start);
	if (service->sender == NULL)
		return;
	io_remove(&service->io_events);
	/* the records of the last requests are logged after the threads end */
	if (cmn_sender_stop_and_drain(service->sender, SENDER_STOP_TIMEOUT_MS,
				      chatmail_notify_log_record_func,
				      service->event) < 0) {
		e_warning(service->event, "sender threads were not done within %d ms",
			  SENDER_STOP_TIMEOUT_MS);
	}
	service->sender = NULL;
	e_info(service->event, "sender stopped");
}

int main(int argc, char *argv[])
{
	const struct setting_parser_info *set_roots[] = {
		&sender_service_setting_parser_info,
		NULL
	};
	struct master_service_settings_input input;
	struct master_service_settings_output output;
	const struct sender_service_settings *set;
	struct sender_service service;
	const char *error;
	bool configured;

	master_service = master_service_init("chatmail-notify-sender",
					     MASTER_SERVICE_FLAG_NO_SSL_INIT |
					     MASTER_SERVICE_FLAG_NO_IDLE_DIE,
					     &argc, &argv, "");
	if (master_getopt(master_service) > 0)
		return FATAL_DEFAULT;

	i_zero(&input);
	input.roots = set_roots;
	input.module = "mail";
	input.service = "chatmail-notify-sender";
	if (master_service_settings_read(master_service, &input, &output, &error) < 0)
		i_fatal("Error reading configuration: %s", error);
	set = master_service_settings_get_others(master_service)[0];

	master_service_init_log_with_pid(master_service);
	restrict_access_by_env(RESTRICT_ACCESS_FLAG_ALLOW_ROOT, NULL);
	restrict_access_allow_coredumps(TRUE);

	i_zero(&service);
	service.pool = pool_alloconly_create("chatmail-notify-sender", 1024);
	service.event = chatmail_notify_event_create(NULL);
	configured = chatmail_notify_sender_settings_parse(service.pool,
		plugin_getenv, (void *)&set->plugin_envs, &service.config, &error) == 0;

	master_service_init_finish(master_service);
	if (configured)
		sender_start(&service);
	else
		e_error(service.event, "not sending notifications: %s", error);

	master_service_run(master_service, NULL);

	sender_stop(&service);
	event_unref(&service.event);
	pool_unref(&service.pool);
	master_service_deinit(&master_service);
	return 0;
}
