/* -u of list and flush: those commands look at the global spool, so they
   are not mail commands, but a mistyped user must still say so. The
   userdb gives the canonical name, which is the address the spool holds. */

#include "lib.h"
#include "auth-master.h"
#include "doveadm.h"
#include "doveadm-settings.h"
#include "doveadm-chatmail-notify.h"

#define USER_LOOKUP_TIMEOUT_MSECS (30 * 1000)

bool doveadm_chatmail_notify_user_lookup(const char *user,
					 const char **username_r)
{
	const char *socket_path = doveadm_settings->auth_socket_path;
	struct auth_master_connection *conn;
	struct auth_user_info info;
	const char *const *fields = NULL;
	const char *username = NULL;
	pool_t pool;
	int ret;

	if (*user == '\0') {
		doveadm_chatmail_notify_fail(EX_USAGE, "Empty user name");
		return FALSE;
	}
	i_zero(&info);
	info.service = "doveadm";

	/* The reply arrives in an ioloop of its own, in another data stack
	   frame: a data stack pool would panic. */
	pool = pool_alloconly_create("chatmail-notify user lookup", 1024);
	conn = auth_master_init(socket_path, 0);
	auth_master_set_timeout(conn, USER_LOOKUP_TIMEOUT_MSECS);
	ret = auth_master_user_lookup(conn, user, &info, pool, &username, &fields);
	auth_master_deinit(&conn);

	if (ret < 0) {
		const char *reason = fields != NULL && fields[0] != NULL ?
			fields[0] : "auth service unreachable";
		doveadm_chatmail_notify_fail(EX_TEMPFAIL,
			"User lookup of %s failed: %s (is Dovecot running? "
			"auth socket %s)", user, reason, socket_path);
	} else if (ret == 0) {
		doveadm_chatmail_notify_fail(EX_NOUSER,
			"User %s doesn't exist", user);
	} else {
		*username_r = t_strdup(username != NULL && *username != '\0' ?
				       username : user);
	}
	pool_unref(&pool);
	return ret > 0;
}
