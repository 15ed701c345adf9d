/* cmn-spool-tool: the integration tests' window on the spool, through the
 * core's own C API (the same code the plugin and doveadm use).
 *
 *   cmn-spool-tool enqueue SPOOL_DIR ADDR TOKEN_STORE_PATH TOKEN...
 *       writes one item per token as the calling uid would on delivery
 *   cmn-spool-tool status SPOOL_DIR [ADDR]
 *       one JSON line: the sender's pid and published counters, and how
 *       many items (for ADDR, or all) the spool holds right now */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chatmail-notify.h"

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int fail(const char *what, char *error)
{
	fprintf(stderr, "cmn-spool-tool: %s: %s\n", what, error != NULL ? error : "failed");
	cmn_free(error);
	return 1;
}

static int enqueue(const char *spool_dir, const char *addr, const char *store_path,
		   char **tokens, size_t n_tokens)
{
	char *error = NULL;
	cmn_spool_writer_t *writer = cmn_spool_writer_create(spool_dir, 1, &error);
	if (writer == NULL)
		return fail("create spool writer", error);

	size_t *lens = calloc(n_tokens, sizeof(*lens));
	if (lens == NULL)
		return fail("enqueue", NULL);
	for (size_t i = 0; i < n_tokens; i++)
		lens[i] = strlen(tokens[i]);
	int ret = cmn_spool_writer_enqueue(writer, addr, store_path,
					   (const char *const *)tokens, lens,
					   n_tokens, now_ms(), &error);
	free(lens);
	cmn_spool_writer_destroy(writer);
	return ret < 0 ? fail("enqueue", error) : 0;
}

static void count_item(void *ctx, const cmn_spool_item_info_t *item)
{
	(void)item;
	(*(uint64_t *)ctx)++;
}

static int status(const char *spool_dir, const char *addr)
{
	char *error = NULL;
	cmn_spool_status_t st;
	if (cmn_spool_status(spool_dir, &st, &error) < 0)
		return fail("status", error);
	uint64_t items = 0;
	if (cmn_spool_list(spool_dir, addr, count_item, &items, &error) < 0)
		return fail("list", error);
	printf("{\"sender_pid\": %ld, \"stats_ms\": %" PRId64 ", \"items\": %" PRIu64
	       ", \"enqueued\": %" PRIu64 ", \"sent\": %" PRIu64 ", \"gone\": %" PRIu64
	       ", \"retried\": %" PRIu64 ", \"dropped\": %" PRIu64
	       ", \"coalesced\": %" PRIu64 ", \"quarantined\": %" PRIu64
	       ", \"pending\": %" PRIu64 ", \"inflight\": %" PRIu64 "}\n",
	       (long)st.sender_pid, st.stats_ms, items, st.stats.enqueued,
	       st.stats.sent, st.stats.gone, st.stats.retried, st.stats.dropped,
	       st.stats.coalesced, st.stats.quarantined, st.stats.pending,
	       st.stats.inflight);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 6 && strcmp(argv[1], "enqueue") == 0)
		return enqueue(argv[2], argv[3], argv[4], argv + 5, (size_t)(argc - 5));
	if ((argc == 3 || argc == 4) && strcmp(argv[1], "status") == 0)
		return status(argv[2], argc == 4 ? argv[3] : NULL);
	fprintf(stderr, "usage: cmn-spool-tool enqueue SPOOL_DIR ADDR TOKEN_STORE_PATH TOKEN...\n"
			"       cmn-spool-tool status SPOOL_DIR [ADDR]\n");
	return 2;
}
