/* doveadm chatmail-notify status: is anything being sent, how much waits
   and for how long, and what the sender did since it started. One
   field/value row each, so `-f tab` output is easy to grep. */

#include "lib.h"
#include "array.h"
#include "doveadm.h"
#include "doveadm-cmd.h"
#include "doveadm-print.h"
#include "doveadm-chatmail-notify.h"

/* Records are checked, but a count per attempt must never be able to
   allocate much: later attempts share the last row. */
#define STATUS_MAX_ATTEMPT_ROWS 32

struct spool_summary {
	ARRAY(uint64_t) by_attempt;
	uint64_t pending, incoming;
	int64_t oldest_start_ms, next_due_ms;
};

static void spool_summary_add(void *context, const cmn_spool_item_info_t *item)
{
	struct spool_summary *summary = context;
	unsigned int attempt = I_MIN(item->attempt, STATUS_MAX_ATTEMPT_ROWS - 1);
	uint64_t *count = array_idx_get_space(&summary->by_attempt, attempt);

	(*count)++;
	summary->pending++;
	if (item->accepted == 0)
		summary->incoming++;
	if (summary->oldest_start_ms == 0 ||
	    item->start_ms < summary->oldest_start_ms)
		summary->oldest_start_ms = item->start_ms;
	if (summary->next_due_ms == 0 || item->due_ms < summary->next_due_ms)
		summary->next_due_ms = item->due_ms;
}

static void print_row(const char *field, const char *value)
{
	doveadm_print(field);
	doveadm_print(value);
}

static void print_count(const char *field, uint64_t value)
{
	doveadm_print(field);
	doveadm_print_num(value);
}

static void print_sender(const cmn_spool_status_t *status)
{
	const cmn_sender_stats_t *stats = &status->stats;

	print_row("sender_pid", status->sender_pid == 0 ? "none" :
		  dec2str(status->sender_pid));
	print_row("sender_started",
		  doveadm_chatmail_notify_time(status->sender_started_ms));
	print_row("counters_published",
		  doveadm_chatmail_notify_time(status->stats_ms));
	print_count("enqueued", stats->enqueued);
	print_count("sent", stats->sent);
	print_count("gone", stats->gone);
	print_count("retried", stats->retried);
	print_count("dropped", stats->dropped);
	print_count("coalesced", stats->coalesced);
	print_count("quarantined", stats->quarantined);
	print_count("inflight", stats->inflight);
}

static void print_summary(const struct spool_summary *summary, int64_t now_ms)
{
	const uint64_t *counts;
	unsigned int attempt, n;

	print_count("pending", summary->pending);
	print_count("incoming", summary->incoming);
	counts = array_get(&summary->by_attempt, &n);
	for (attempt = 0; attempt < n; attempt++) {
		if (counts[attempt] == 0)
			continue;
		print_count(t_strdup_printf("pending_attempt_%u%s", attempt,
					    attempt == STATUS_MAX_ATTEMPT_ROWS - 1 ?
					    "+" : ""),
			    counts[attempt]);
	}
	if (summary->pending == 0) {
		print_row("oldest_age", "-");
		print_row("next_due", "-");
		print_row("next_due_in", "-");
		return;
	}
	print_row("oldest_age", doveadm_chatmail_notify_duration(
			now_ms - summary->oldest_start_ms));
	print_row("next_due", doveadm_chatmail_notify_time(summary->next_due_ms));
	print_row("next_due_in", summary->next_due_ms <= now_ms ? "now" :
		  doveadm_chatmail_notify_duration(summary->next_due_ms - now_ms));
}

static void cmd_chatmail_notify_status(struct doveadm_cmd_context *cctx ATTR_UNUSED)
{
	const char *spool_dir = doveadm_chatmail_notify_spool_dir();
	struct spool_summary summary;
	cmn_spool_status_t status;
	char *error = NULL;
	bool listed;

	if (!doveadm_chatmail_notify_spool_check(spool_dir) ||
	    !doveadm_chatmail_notify_spool_status(spool_dir, &status))
		return;

	i_zero(&summary);
	t_array_init(&summary.by_attempt, 8);
	listed = cmn_spool_list(spool_dir, NULL, spool_summary_add,
				&summary, &error) == 0;

	doveadm_print_init(DOVEADM_PRINT_TYPE_TABLE);
	doveadm_print_header_simple("field");
	doveadm_print_header_simple("value");
	print_row("spool", spool_dir);
	print_sender(&status);
	if (listed)
		print_summary(&summary, doveadm_chatmail_notify_now_ms());

	if (!listed) {
		doveadm_chatmail_notify_fail(EX_TEMPFAIL,
			"Reading the items of spool %s failed: %s",
			spool_dir, error);
		cmn_free(error);
	}
	if (status.sender_pid == 0)
		doveadm_chatmail_notify_report_no_sender(spool_dir);
}

struct doveadm_cmd_ver2 doveadm_chatmail_notify_cmd_status = {
	.name = "chatmail-notify status",
	.cmd = cmd_chatmail_notify_status,
	.usage = "",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_PARAMS_END
};
