#ifndef CHATMAIL_NOTIFY_SETTINGS_H
#define CHATMAIL_NOTIFY_SETTINGS_H

#include "chatmail-notify.h"

#define CHATMAIL_NOTIFY_DEFAULT_SPOOL_DIR "/var/spool/dovecot-chatmail-notify"
#define CHATMAIL_NOTIFY_DEFAULT_TOKEN_FILE_NAME "metadata.json"

/* Returns the value of plugin setting `name` (e.g. "chatmail_notify_url"),
   or NULL when it is not set. */
typedef const char *chatmail_notify_getenv_func(const char *name, void *context);

/* What a delivering or IMAP process needs for one user. */
struct chatmail_notify_user_settings {
	/* NULL: the default, <home>/metadata.json, resolved by the caller */
	const char *token_file;
	const char *spool_dir;
	int64_t token_ttl_ms;
	unsigned int max_tokens;
	bool skip_self;
	/* fsync the spool; "no" is unsafe and only for benchmarks and tests */
	bool durable;
};

/* Each parser returns 0, or -1 with *error_r naming the bad setting and
   why. Strings are allocated from `pool`. */
int chatmail_notify_user_settings_parse(pool_t pool,
					chatmail_notify_getenv_func *getenv,
					void *context,
					struct chatmail_notify_user_settings *set_r,
					const char **error_r);

/* Fills a sender configuration (defaults, then the settings given) and
   validates it. */
int chatmail_notify_sender_settings_parse(pool_t pool,
					  chatmail_notify_getenv_func *getenv,
					  void *context,
					  cmn_sender_config_t *config_r,
					  const char **error_r);

#endif
