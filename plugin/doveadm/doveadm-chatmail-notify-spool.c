/* Where the spool is, whether it is there, and who serves it. The spool is
   global (one sender per spool), so it comes from the global plugin {}
   block as doveadm reads it: `doveadm -c CONF` or
   `-o plugin/chatmail_notify_spool_dir=DIR` select another one. */

#include "lib.h"
#include "str.h"
#include "strnum.h"
#include "doveadm.h"
#include "doveadm-settings.h"
#include "doveadm-util.h"
#include "chatmail-notify-settings.h"
#include "doveadm-chatmail-notify.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

const char *doveadm_chatmail_notify_spool_dir(void)
{
	const char *dir = doveadm_plugin_getenv("chatmail_notify_spool_dir");

	return dir == NULL || *dir == '\0' ?
		CHATMAIL_NOTIFY_DEFAULT_SPOOL_DIR : dir;
}

bool doveadm_chatmail_notify_spool_check(const char *spool_dir)
{
	struct stat st;

	if (spool_dir[0] != '/') {
		doveadm_chatmail_notify_fail(EX_CONFIG,
			"chatmail_notify_spool_dir = '%s': must be an absolute "
			"path", spool_dir);
		return FALSE;
	}
	if (stat(spool_dir, &st) < 0) {
		if (errno == ENOENT) {
			doveadm_chatmail_notify_fail(DOVEADM_EX_NOTFOUND,
				"Spool %s does not exist: no chatmail-notify-sender "
				"has run with this plugin { chatmail_notify_spool_dir } "
				"(is service chatmail-notify-sender configured?)",
				spool_dir);
		} else if (errno == EACCES) {
			doveadm_chatmail_notify_fail(EX_NOPERM,
				"Spool %s: %m (run doveadm as root)", spool_dir);
		} else {
			doveadm_chatmail_notify_fail(EX_TEMPFAIL,
				"stat(%s) failed: %m", spool_dir);
		}
		return FALSE;
	}
	if (!S_ISDIR(st.st_mode)) {
		doveadm_chatmail_notify_fail(EX_CONFIG,
			"Spool %s is not a directory "
			"(plugin { chatmail_notify_spool_dir })", spool_dir);
		return FALSE;
	}
	return TRUE;
}

bool doveadm_chatmail_notify_spool_status(const char *spool_dir,
					  cmn_spool_status_t *status_r)
{
	char *error = NULL;

	if (cmn_spool_status(spool_dir, status_r, &error) < 0) {
		doveadm_chatmail_notify_fail(EX_TEMPFAIL,
			"Reading the status of spool %s failed: %s",
			spool_dir, error);
		cmn_free(error);
		return FALSE;
	}
	return TRUE;
}

bool doveadm_chatmail_notify_dovecot_running(const char **pid_file_r)
{
	char buf[32];
	ssize_t len;
	pid_t pid;
	int fd;

	*pid_file_r = t_strconcat(doveadm_settings->base_dir, "/master.pid", NULL);
	fd = open(*pid_file_r, O_RDONLY);
	if (fd < 0)
		return FALSE;
	len = read(fd, buf, sizeof(buf) - 1);
	i_close_fd(&fd);
	if (len <= 0)
		return FALSE;
	buf[len] = '\0';
	if (buf[len - 1] == '\n')
		buf[len - 1] = '\0';
	if (str_to_pid(buf, &pid) < 0 || pid <= 0)
		return FALSE;
	return kill(pid, 0) == 0 || errno == EPERM;
}

void doveadm_chatmail_notify_report_no_sender(const char *spool_dir)
{
	const char *pid_file;

	if (!doveadm_chatmail_notify_dovecot_running(&pid_file)) {
		doveadm_chatmail_notify_fail(EX_TEMPFAIL,
			"Dovecot is not running (no live master process in %s): "
			"no notification of spool %s is being sent",
			pid_file, spool_dir);
	} else {
		doveadm_chatmail_notify_fail(EX_TEMPFAIL,
			"Dovecot runs, but no chatmail-notify-sender process "
			"holds %s/sender.lock: no notification is being sent "
			"(check service chatmail-notify-sender and the log)",
			spool_dir);
	}
}
