/* Parses and validates the plugin {} settings. Every error names the
   setting, quotes the value and says why it was refused. */
#include "lib.h"
#include "chatmail-notify-settings.h"

#define SETTING_PREFIX "chatmail_notify_"

struct setting_reader {
	pool_t pool;
	chatmail_notify_getenv_func *getenv;
	void *context;
	const char *error;
};

static const char *setting_get(struct setting_reader *reader, const char *name)
{
	const char *value = reader->getenv(t_strconcat(SETTING_PREFIX, name, NULL),
					   reader->context);
	return value == NULL || *value == '\0' ? NULL : value;
}

static int setting_fail(struct setting_reader *reader, const char *name,
			const char *value, const char *reason)
{
	reader->error = p_strdup_printf(reader->pool, "%s%s = '%s': %s",
					SETTING_PREFIX, name, value,
					reason == NULL ? "invalid value" : reason);
	return -1;
}

/* Takes ownership of the core's malloc()ed message. */
static int setting_fail_core(struct setting_reader *reader, const char *name,
			     const char *value, char *core_error)
{
	int ret = setting_fail(reader, name, value, core_error);

	cmn_free(core_error);
	return ret;
}

static int setting_duration(struct setting_reader *reader, const char *name,
			    int64_t *ms)
{
	const char *value = setting_get(reader, name);
	char *error = NULL;

	if (value == NULL)
		return 0;
	if (cmn_parse_duration_ms(value, ms, &error) < 0)
		return setting_fail_core(reader, name, value, error);
	return 0;
}

static int setting_uint(struct setting_reader *reader, const char *name,
			uint64_t max, uint64_t *out)
{
	const char *value = setting_get(reader, name);
	char *error = NULL;
	uint64_t parsed;

	if (value == NULL)
		return 0;
	if (cmn_parse_uint(value, &parsed, &error) < 0)
		return setting_fail_core(reader, name, value, error);
	if (parsed > max) {
		return setting_fail(reader, name, value,
				    t_strdup_printf("larger than %llu",
						    (unsigned long long)max));
	}
	*out = parsed;
	return 0;
}

static int setting_bool(struct setting_reader *reader, const char *name, bool *out)
{
	const char *value = setting_get(reader, name);
	char *error = NULL;
	int parsed;

	if (value == NULL)
		return 0;
	if (cmn_parse_bool(value, &parsed, &error) < 0)
		return setting_fail_core(reader, name, value, error);
	*out = parsed != 0;
	return 0;
}

static const char *setting_string(struct setting_reader *reader, const char *name,
				  const char *default_value)
{
	const char *value = setting_get(reader, name);

	return p_strdup(reader->pool, value != NULL ? value : default_value);
}

int chatmail_notify_user_settings_parse(pool_t pool,
					chatmail_notify_getenv_func *getenv,
					void *context,
					struct chatmail_notify_user_settings *set_r,
					const char **error_r)
{
	struct setting_reader reader = { pool, getenv, context, NULL };
	uint64_t max_tokens = 32;

	i_zero(set_r);
	set_r->token_file = setting_string(&reader, "token_file", NULL);
	set_r->spool_dir = setting_string(&reader, "spool_dir",
					  CHATMAIL_NOTIFY_DEFAULT_SPOOL_DIR);
	set_r->token_ttl_ms = 90LL * 24 * 3600 * 1000;
	set_r->skip_self = TRUE;
	set_r->durable = TRUE;
	if (setting_duration(&reader, "token_ttl", &set_r->token_ttl_ms) < 0 ||
	    setting_uint(&reader, "max_tokens", UINT_MAX, &max_tokens) < 0 ||
	    setting_bool(&reader, "skip_self", &set_r->skip_self) < 0 ||
	    setting_bool(&reader, "fsync", &set_r->durable) < 0) {
		*error_r = reader.error;
		return -1;
	}
	set_r->max_tokens = (unsigned int)max_tokens;
	if (set_r->spool_dir[0] != '/') {
		*error_r = p_strdup_printf(pool, SETTING_PREFIX"spool_dir = '%s': "
					   "must be an absolute path", set_r->spool_dir);
		return -1;
	}
	return 0;
}

int chatmail_notify_sender_settings_parse(pool_t pool,
					  chatmail_notify_getenv_func *getenv,
					  void *context,
					  cmn_sender_config_t *config_r,
					  const char **error_r)
{
	struct setting_reader reader = { pool, getenv, context, NULL };
	uint64_t max_inflight, max_items;
	bool durable;
	char *error = NULL;

	cmn_sender_config_init(config_r);
	max_inflight = config_r->max_inflight;
	max_items = config_r->max_items;
	durable = config_r->durable != 0;
	config_r->url = setting_string(&reader, "url", config_r->url);
	config_r->spool_dir = setting_string(&reader, "spool_dir",
					     CHATMAIL_NOTIFY_DEFAULT_SPOOL_DIR);
	config_r->ca_file = setting_string(&reader, "ca_file", config_r->ca_file);
	if (setting_duration(&reader, "backoff_base", &config_r->backoff_base_ms) < 0 ||
	    setting_duration(&reader, "deadline", &config_r->deadline_ms) < 0 ||
	    setting_duration(&reader, "timeout", &config_r->timeout_ms) < 0 ||
	    setting_uint(&reader, "max_inflight", UINT_MAX, &max_inflight) < 0 ||
	    setting_uint(&reader, "spool_max_items", UINT64_MAX, &max_items) < 0 ||
	    setting_bool(&reader, "fsync", &durable) < 0) {
		*error_r = reader.error;
		return -1;
	}
	config_r->max_inflight = (unsigned int)max_inflight;
	config_r->max_items = max_items;
	config_r->durable = durable ? 1 : 0;
	if (cmn_sender_config_validate(config_r, &error) < 0) {
		*error_r = p_strdup(pool, error == NULL ? "invalid sender settings" : error);
		cmn_free(error);
		return -1;
	}
	return 0;
}
