#ifndef DOVEADM_CHATMAIL_NOTIFY_H
#define DOVEADM_CHATMAIL_NOTIFY_H

#include "chatmail-notify.h"

struct doveadm_cmd_ver2;

/* The commands, registered by the plugin's init. */
extern struct doveadm_cmd_ver2 doveadm_chatmail_notify_cmd_status;
extern struct doveadm_cmd_ver2 doveadm_chatmail_notify_cmd_list;
extern struct doveadm_cmd_ver2 doveadm_chatmail_notify_cmd_flush;
extern struct doveadm_cmd_ver2 doveadm_chatmail_notify_cmd_tokens;
extern struct doveadm_cmd_ver2 doveadm_chatmail_notify_cmd_tokens_remove;

/* Logs the message as an error and sets doveadm's exit code (a temporary
   failure wins over any other code, otherwise the first one stays). */
void doveadm_chatmail_notify_fail(int exit_code, const char *format, ...)
	ATTR_FORMAT(2, 3);

/* ---- the spool (doveadm-chatmail-notify-spool.c) ---- */

/* chatmail_notify_spool_dir of the global plugin {} block. */
const char *doveadm_chatmail_notify_spool_dir(void);
/* FALSE (after reporting why) when the spool is missing or unreadable. */
bool doveadm_chatmail_notify_spool_check(const char *spool_dir);
/* FALSE (after reporting why) when the spool's status cannot be read. */
bool doveadm_chatmail_notify_spool_status(const char *spool_dir,
					  cmn_spool_status_t *status_r);
/* Whether the master process of base_dir/master.pid is alive. */
bool doveadm_chatmail_notify_dovecot_running(const char **pid_file_r);
/* Reports, with a temporary failure, that no sender process serves the
   spool, telling whether Dovecot itself is stopped. */
void doveadm_chatmail_notify_report_no_sender(const char *spool_dir);

/* ---- -u of the spool commands (doveadm-chatmail-notify-user.c) ---- */

/* Looks the user up in the userdb: TRUE with the canonical name, FALSE
   after reporting a missing user or an unreachable auth service. */
bool doveadm_chatmail_notify_user_lookup(const char *user,
					 const char **username_r);

/* ---- text for people (doveadm-chatmail-notify-format.c) ---- */

/* "2026-12-04 16:50:01" in local time, like other doveadm commands. */
const char *doveadm_chatmail_notify_time(int64_t unix_ms);
/* "350ms", "12s", "4m10s", "2h05m", "3d04h"; negative values get a '-'. */
const char *doveadm_chatmail_notify_duration(int64_t ms);
int64_t doveadm_chatmail_notify_now_ms(void);

#endif
