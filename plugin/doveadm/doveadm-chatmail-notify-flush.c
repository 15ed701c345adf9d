/* doveadm chatmail-notify flush [-u user]: asks the sender to make the
   pending items (of one user) due now, e.g. once a gateway outage is over.
   Prints how many items the request covers. */

#include "lib.h"
#include "doveadm.h"
#include "doveadm-cmd.h"
#include "doveadm-print.h"
#include "doveadm-chatmail-notify.h"

static void item_count(void *context,
		       const cmn_spool_item_info_t *item ATTR_UNUSED)
{
	uint64_t *count = context;

	(*count)++;
}

static void cmd_chatmail_notify_flush(struct doveadm_cmd_context *cctx)
{
	const char *spool_dir = doveadm_chatmail_notify_spool_dir();
	const char *user = NULL, *addr = NULL;
	cmn_spool_status_t status;
	uint64_t count = 0;
	char *error = NULL;

	if (doveadm_cmd_param_str(cctx, "user", &user) &&
	    !doveadm_chatmail_notify_user_lookup(user, &addr))
		return;
	if (!doveadm_chatmail_notify_spool_check(spool_dir) ||
	    !doveadm_chatmail_notify_spool_status(spool_dir, &status))
		return;

	if (cmn_spool_list(spool_dir, addr, item_count, &count, &error) < 0 ||
	    cmn_spool_request_flush(spool_dir, addr, &error) < 0) {
		doveadm_chatmail_notify_fail(EX_TEMPFAIL,
			"Flushing spool %s failed: %s", spool_dir, error);
		cmn_free(error);
		return;
	}
	doveadm_print_init(DOVEADM_PRINT_TYPE_TABLE);
	doveadm_print_header_simple("address");
	doveadm_print_header("items", "items",
			     DOVEADM_PRINT_HEADER_FLAG_RIGHT_JUSTIFY);
	doveadm_print(addr == NULL ? "*" : addr);
	doveadm_print_num(count);

	if (status.sender_pid == 0) {
		doveadm_chatmail_notify_report_no_sender(spool_dir);
		i_info("The flush request waits in %s/control/ for the next "
		       "sender", spool_dir);
	}
}

struct doveadm_cmd_ver2 doveadm_chatmail_notify_cmd_flush = {
	.name = "chatmail-notify flush",
	.cmd = cmd_chatmail_notify_flush,
	.usage = "[-u <user>]",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_PARAM('u', "user", CMD_PARAM_STR, CMD_PARAM_FLAG_NONE)
DOVEADM_CMD_PARAMS_END
};
