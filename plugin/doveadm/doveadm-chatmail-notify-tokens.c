/* doveadm chatmail-notify tokens -u user: the user's device tokens (as
   hashes) and how long ago each was registered or refreshed;
   `tokens remove -u user HASH` removes one. Mail commands: doveadm looks
   the user up, reads the user's plugin {} settings and runs as the user. */

#include "lib.h"
#include "mail-user.h"
#include "doveadm-mail.h"
#include "doveadm-print.h"
#include "chatmail-notify-settings.h"
#include "doveadm-chatmail-notify.h"

#include <ctype.h>

struct tokens_cmd_context {
	struct doveadm_mail_cmd_context ctx;
	const char *remove_hash; /* tokens remove only */
};

struct token_store_ref {
	const char *path;
	cmn_token_store_options_t options;
};

static void token_store_warning(void *context, const cmn_event_t *event)
{
	const char *path = context;

	if (event->level >= CMN_LOG_WARNING)
		i_warning("Token store %s: %s", path, event->message);
}

static const char *user_getenv(const char *name, void *context)
{
	return mail_user_plugin_getenv(context, name);
}

/* The same settings and the same file as the mail plugin uses. */
static bool
token_store_ref_init(struct mail_user *user, struct token_store_ref *ref_r,
		     const char **error_r)
{
	struct chatmail_notify_user_settings set;
	const char *home;

	i_zero(ref_r);
	if (chatmail_notify_user_settings_parse(pool_datastack_create(),
						user_getenv, user, &set,
						error_r) < 0)
		return FALSE;
	if (set.token_file != NULL)
		ref_r->path = set.token_file;
	else if (mail_user_get_home(user, &home) > 0 && home != NULL &&
		 *home != '\0') {
		ref_r->path = t_strconcat(home, "/",
			CHATMAIL_NOTIFY_DEFAULT_TOKEN_FILE_NAME, NULL);
	} else {
		*error_r = "The user has no home directory: "
			"set chatmail_notify_token_file";
		return FALSE;
	}
	ref_r->options.ttl_ms = set.token_ttl_ms;
	ref_r->options.max_tokens = set.max_tokens;
	ref_r->options.now_ms = doveadm_chatmail_notify_now_ms();
	ref_r->options.on_event = token_store_warning;
	ref_r->options.event_ctx = (void *)ref_r->path;
	return TRUE;
}

/* Fails the command for this user with the given doveadm exit code. */
static int
tokens_cmd_fail(struct doveadm_mail_cmd_context *ctx, int exit_code,
		const char *message)
{
	i_error("%s", message);
	if (ctx->exit_code == 0 || exit_code == EX_TEMPFAIL)
		ctx->exit_code = exit_code;
	return -1;
}

/* Says so when the userdb cannot answer because the local Dovecot is
   stopped, instead of doveadm's "Internal error occurred". Commands sent
   to a doveadm server (-S) do not need the local one. */
static void cmd_tokens_preinit(struct doveadm_mail_cmd_context *ctx)
{
	const char *pid_file;

	if ((ctx->service_flags & MAIL_STORAGE_SERVICE_FLAG_USERDB_LOOKUP) != 0 &&
	    !ctx->proxying && ctx->set->doveadm_worker_count == 0 &&
	    !doveadm_chatmail_notify_dovecot_running(&pid_file)) {
		i_fatal_status(EX_TEMPFAIL, "Dovecot is not running (no live "
			       "master process in %s): users cannot be looked up",
			       pid_file);
	}
}

/* ---- tokens ---- */

static void print_token(void *context, const char *token, size_t len,
			int64_t refreshed_ms)
{
	const int64_t *now_ms = context;
	char hash[CMN_TOKEN_HASH_LEN + 1];

	cmn_token_hash(token, len, hash);
	doveadm_print(hash);
	doveadm_print(doveadm_chatmail_notify_time(refreshed_ms));
	doveadm_print(doveadm_chatmail_notify_duration(*now_ms - refreshed_ms));
}

static int cmd_tokens_run(struct doveadm_mail_cmd_context *ctx,
			  struct mail_user *user)
{
	struct token_store_ref store;
	const char *error;
	char *store_error = NULL;

	if (!token_store_ref_init(user, &store, &error))
		return tokens_cmd_fail(ctx, EX_CONFIG, error);
	if (cmn_token_store_list(store.path, &store.options, print_token,
				 &store.options.now_ms, &store_error) < 0) {
		error = t_strdup_printf("Reading tokens from %s failed: %s",
					store.path, store_error);
		cmn_free(store_error);
		return tokens_cmd_fail(ctx, EX_TEMPFAIL, error);
	}
	return 0;
}

static void cmd_tokens_init(struct doveadm_mail_cmd_context *ctx ATTR_UNUSED,
			    const char *const args[] ATTR_UNUSED)
{
	doveadm_print_header_simple("token_hash");
	doveadm_print_header_simple("refreshed");
	doveadm_print_header_simple("age");
}

static struct doveadm_mail_cmd_context *cmd_tokens_alloc(void)
{
	struct tokens_cmd_context *ctx;

	ctx = doveadm_mail_cmd_alloc(struct tokens_cmd_context);
	ctx->ctx.v.preinit = cmd_tokens_preinit;
	ctx->ctx.v.init = cmd_tokens_init;
	ctx->ctx.v.run = cmd_tokens_run;
	doveadm_print_init(DOVEADM_PRINT_TYPE_TABLE);
	return &ctx->ctx;
}

/* ---- tokens remove ---- */

static bool token_hash_is_valid(const char *hash)
{
	size_t i;

	for (i = 0; hash[i] != '\0'; i++) {
		if (!i_isxdigit(hash[i]))
			return FALSE;
	}
	return i == CMN_TOKEN_HASH_LEN;
}

static int cmd_tokens_remove_run(struct doveadm_mail_cmd_context *_ctx,
				 struct mail_user *user)
{
	struct tokens_cmd_context *ctx =
		container_of(_ctx, struct tokens_cmd_context, ctx);
	struct token_store_ref store;
	const char *error;
	char *store_error = NULL;
	int ret;

	if (!token_store_ref_init(user, &store, &error))
		return tokens_cmd_fail(_ctx, EX_CONFIG, error);
	ret = cmn_token_store_remove(store.path, ctx->remove_hash, 0,
				     &store.options, &store_error);
	if (ret < 0) {
		error = t_strdup_printf("Removing token %s from %s failed: %s",
					ctx->remove_hash, store.path, store_error);
		cmn_free(store_error);
		return tokens_cmd_fail(_ctx, EX_TEMPFAIL, error);
	}
	if (ret == 0) {
		return tokens_cmd_fail(_ctx, DOVEADM_EX_NOTFOUND, t_strdup_printf(
			"No token with hash %s in %s (see doveadm chatmail-notify "
			"tokens -u %s)", ctx->remove_hash, store.path,
			user->username));
	}
	i_info("Removed token %s from %s", ctx->remove_hash, store.path);
	return 0;
}

static void cmd_tokens_remove_init(struct doveadm_mail_cmd_context *_ctx,
				   const char *const args[])
{
	struct tokens_cmd_context *ctx =
		container_of(_ctx, struct tokens_cmd_context, ctx);

	if (args[0] == NULL || args[1] != NULL)
		doveadm_mail_help_name("chatmail-notify tokens remove");
	if (!token_hash_is_valid(args[0])) {
		i_fatal_status(EX_USAGE, "Invalid token hash '%s': expected the "
			       "%u hex digits shown by doveadm chatmail-notify "
			       "tokens", args[0], CMN_TOKEN_HASH_LEN);
	}
	ctx->remove_hash = p_strdup(_ctx->pool, t_str_lcase(args[0]));
}

static struct doveadm_mail_cmd_context *cmd_tokens_remove_alloc(void)
{
	struct tokens_cmd_context *ctx;

	ctx = doveadm_mail_cmd_alloc(struct tokens_cmd_context);
	ctx->ctx.v.preinit = cmd_tokens_preinit;
	ctx->ctx.v.init = cmd_tokens_remove_init;
	ctx->ctx.v.run = cmd_tokens_remove_run;
	return &ctx->ctx;
}

struct doveadm_cmd_ver2 doveadm_chatmail_notify_cmd_tokens = {
	.name = "chatmail-notify tokens",
	.mail_cmd = cmd_tokens_alloc,
	.usage = DOVEADM_CMD_MAIL_USAGE_PREFIX,
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_MAIL_COMMON
DOVEADM_CMD_PARAMS_END
};

struct doveadm_cmd_ver2 doveadm_chatmail_notify_cmd_tokens_remove = {
	.name = "chatmail-notify tokens remove",
	.mail_cmd = cmd_tokens_remove_alloc,
	.usage = DOVEADM_CMD_MAIL_USAGE_PREFIX "<token hash>",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_MAIL_COMMON
DOVEADM_CMD_PARAM('\0', "token-hash", CMD_PARAM_STR, CMD_PARAM_FLAG_POSITIONAL)
DOVEADM_CMD_PARAMS_END
};
