/* doveadm chatmail-notify status|list|flush|tokens: what an operator needs
   to see why a phone does not ring. Loaded by doveadm from
   <moduledir>/doveadm/ (a path compiled into doveadm). */

#include "lib.h"
#include "module-dir.h"
#include "doveadm.h"
#include "doveadm-cmd.h"
#include "doveadm-chatmail-notify.h"

#define EXPORT __attribute__((visibility("default")))

EXPORT extern const char *doveadm_chatmail_notify_plugin_version;
EXPORT const char *doveadm_chatmail_notify_plugin_version = DOVECOT_ABI_VERSION;

EXPORT void doveadm_chatmail_notify_plugin_init(struct module *module);
EXPORT void doveadm_chatmail_notify_plugin_deinit(void);

/* doveadm picks the first registered command whose words match, so
   "tokens remove" must come before "tokens". */
static struct doveadm_cmd_ver2 *const chatmail_notify_commands[] = {
	&doveadm_chatmail_notify_cmd_status,
	&doveadm_chatmail_notify_cmd_list,
	&doveadm_chatmail_notify_cmd_flush,
	&doveadm_chatmail_notify_cmd_tokens_remove,
	&doveadm_chatmail_notify_cmd_tokens,
};

void doveadm_chatmail_notify_fail(int exit_code, const char *format, ...)
{
	va_list args;

	va_start(args, format);
	i_error("%s", t_strdup_vprintf(format, args));
	va_end(args);
	if (doveadm_exit_code == 0 || exit_code == EX_TEMPFAIL)
		doveadm_exit_code = exit_code;
}

void doveadm_chatmail_notify_plugin_init(struct module *module ATTR_UNUSED)
{
	unsigned int i;

	for (i = 0; i < N_ELEMENTS(chatmail_notify_commands); i++)
		doveadm_cmd_register_ver2(chatmail_notify_commands[i]);
}

void doveadm_chatmail_notify_plugin_deinit(void)
{
}
