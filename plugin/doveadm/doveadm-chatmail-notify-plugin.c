/* doveadm chatmail-notify: what an operator needs to see why a phone does
   not ring. Loaded by doveadm from <moduledir>/doveadm/ (a path compiled
   into doveadm, not mail_plugin_dir).

     doveadm chatmail-notify status
         one field/value row each: the sender's pid ("none"), its start,
         items pending (in total, not yet taken in by the sender, per
         attempt number), the oldest item's age, the next due time, and the
         counters the sender published (sent, gone, retried, dropped, ...)
     doveadm chatmail-notify list [-u <user>]
         pending items, soonest due first: address, state, attempt, due
         in, age, token hash, uid; never a clear token
     doveadm chatmail-notify flush [-u <user>]
         asks the sender to make the pending items due now
     doveadm chatmail-notify tokens -u <user>
     doveadm chatmail-notify tokens remove -u <user> <token hash>
         the user's tokens as hashes, with when each was last registered;
         removing one by its hash

   status, list and flush act on the one global spool: its folder is the
   global plugin { chatmail_notify_spool_dir } as doveadm reads its config
   (select another with -c CONF or -o plugin/chatmail_notify_spool_dir=DIR).
   -u there is checked against the userdb. tokens are mail commands: the
   user's own settings (userdb fields included) and privileges.

   Exit codes: 67 (EX_NOUSER) unknown user, 68 (NOTFOUND) no spool or no
   such token, 75 (EX_TEMPFAIL) Dovecot stopped or no sender serving the
   spool (status and list still print what the spool holds), 64 usage,
   78 (EX_CONFIG) a bad setting. */

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
