/* doveadm chatmail-notify list [-u user]: the pending items, soonest due
   first. Tokens appear only as their hash. The next due time is relative
   ("now", "59m58s"): with the absolute time too the table would not fit
   80 columns (status shows the absolute time of the next one). */

#include "lib.h"
#include "array.h"
#include "sort.h"
#include "doveadm.h"
#include "doveadm-cmd.h"
#include "doveadm-print.h"
#include "doveadm-chatmail-notify.h"

struct listed_item {
	const char *addr, *token_hash;
	unsigned int attempt;
	int64_t start_ms, due_ms;
	uid_t owner_uid;
	bool accepted;
};
ARRAY_DEFINE_TYPE(listed_item, struct listed_item);

struct item_collector {
	pool_t pool;
	ARRAY_TYPE(listed_item) items;
};

static void item_collect(void *context, const cmn_spool_item_info_t *info)
{
	struct item_collector *collector = context;
	struct listed_item *item = array_append_space(&collector->items);

	item->addr = p_strdup(collector->pool, info->addr);
	item->token_hash = p_strdup(collector->pool, info->token_hash);
	item->attempt = info->attempt;
	item->start_ms = info->start_ms;
	item->due_ms = info->due_ms;
	item->owner_uid = info->owner_uid;
	item->accepted = info->accepted != 0;
}

static int listed_item_cmp_due(const struct listed_item *a,
			       const struct listed_item *b)
{
	if (a->due_ms != b->due_ms)
		return a->due_ms < b->due_ms ? -1 : 1;
	return strcmp(a->addr, b->addr);
}

static void print_item(const struct listed_item *item, int64_t now_ms)
{
	doveadm_print(item->addr);
	doveadm_print(item->accepted ? "sender" : "incoming");
	doveadm_print_num(item->attempt);
	doveadm_print(item->due_ms <= now_ms ? "now" :
		      doveadm_chatmail_notify_duration(item->due_ms - now_ms));
	doveadm_print(doveadm_chatmail_notify_duration(now_ms - item->start_ms));
	doveadm_print(item->token_hash);
	doveadm_print(dec2str(item->owner_uid));
}

static void print_headers(void)
{
	doveadm_print_init(DOVEADM_PRINT_TYPE_TABLE);
	doveadm_print_header_simple("address");
	doveadm_print_header_simple("state");
	doveadm_print_header("attempt", "attempt",
			     DOVEADM_PRINT_HEADER_FLAG_RIGHT_JUSTIFY);
	doveadm_print_header_simple("due_in");
	doveadm_print_header_simple("age");
	doveadm_print_header_simple("token_hash");
	doveadm_print_header("uid", "uid",
			     DOVEADM_PRINT_HEADER_FLAG_RIGHT_JUSTIFY);
}

static void cmd_chatmail_notify_list(struct doveadm_cmd_context *cctx)
{
	const char *spool_dir = doveadm_chatmail_notify_spool_dir();
	const char *user = NULL, *addr = NULL;
	struct item_collector collector;
	cmn_spool_status_t status;
	char *error = NULL;

	if (doveadm_cmd_param_str(cctx, "user", &user) &&
	    !doveadm_chatmail_notify_user_lookup(user, &addr))
		return;
	if (!doveadm_chatmail_notify_spool_check(spool_dir))
		return;

	i_zero(&collector);
	collector.pool = pool_alloconly_create("chatmail-notify list", 4096);
	p_array_init(&collector.items, collector.pool, 64);
	if (cmn_spool_list(spool_dir, addr, item_collect, &collector,
			   &error) < 0) {
		doveadm_chatmail_notify_fail(EX_TEMPFAIL,
			"Reading the items of spool %s failed: %s",
			spool_dir, error);
		cmn_free(error);
	} else {
		int64_t now_ms = doveadm_chatmail_notify_now_ms();
		const struct listed_item *item;

		array_sort(&collector.items, listed_item_cmp_due);
		print_headers();
		array_foreach(&collector.items, item)
			print_item(item, now_ms);
	}
	pool_unref(&collector.pool);

	if (doveadm_chatmail_notify_spool_status(spool_dir, &status) &&
	    status.sender_pid == 0)
		doveadm_chatmail_notify_report_no_sender(spool_dir);
}

struct doveadm_cmd_ver2 doveadm_chatmail_notify_cmd_list = {
	.name = "chatmail-notify list",
	.cmd = cmd_chatmail_notify_list,
	.usage = "[-u <user>]",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_PARAM('u', "user", CMD_PARAM_STR, CMD_PARAM_FLAG_NONE)
DOVEADM_CMD_PARAMS_END
};
