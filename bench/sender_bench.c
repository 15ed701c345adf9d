/* sender_bench: drives the notification core through its C ABI for the
 * benchmarks (bench/run). Prints one JSON object on stdout per command.
 *
 *   sender_bench fill  SPOOL N TOKENS_FILE
 *       writes N real-sized tokens (2 per message) into SPOOL with the
 *       delivery-side writer; the clear tokens go to TOKENS_FILE.
 *   sender_bench send  SPOOL N URL [CA] [IDLE_S]
 *       starts the sender on SPOOL and waits until N items are sent;
 *       reports the time to schedule them, to send them, the peak RSS and,
 *       when IDLE_S > 0, the CPU the process burns over IDLE_S idle seconds.
 *   sender_bench storm SPOOL URL CONTROL_BASE RATE PRE_S OUTAGE_S POST_S TOKENS_FILE [CA]
 *       steady load of RATE tokens/s; the gateway answers 500 from PRE_S
 *       for OUTAGE_S seconds; load goes on for POST_S more seconds; then
 *       reports how long the backlog took to drain after the recovery. */
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "chatmail-notify.h"

/* "openpgp:" + base64 of 624 bytes = 840 bytes, like a real token. */
#define TOKEN_RAW_BYTES 624
#define TOKEN_LEN (8 + 4 * TOKEN_RAW_BYTES / 3)
#define TOKENS_PER_MESSAGE 2
/* Bounds every wait: far beyond what a working sender needs (>= 200/s). */
#define SEND_TIMEOUT_MS(n) (30000.0 + 5.0 * (double)(n))

static int64_t mono_ms(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double mono_ms_f(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static int64_t wall_ms(void) {
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void die(const char *what, char *err) {
	fprintf(stderr, "sender_bench: %s: %s\n", what, err != NULL ? err : "failed");
	cmn_free(err);
	exit(1);
}

static void make_token(char out[TOKEN_LEN + 1]) {
	unsigned char raw[TOKEN_RAW_BYTES];
	if (RAND_bytes(raw, sizeof(raw)) != 1)
		die("RAND_bytes", NULL);
	memcpy(out, "openpgp:", 8);
	EVP_EncodeBlock((unsigned char *)out + 8, raw, sizeof(raw));
	out[TOKEN_LEN] = '\0';
}

/* Pauses the calling thread for `ms`: used only to pace the load and the
 * stats polling, never to wait for a result. */
static void pause_ms(double ms) {
	struct timespec ts = {(time_t)(ms / 1000), (long)((ms - (double)(time_t)(ms / 1000) * 1000) * 1e6)};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static long proc_status_kb(const char *field) {
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = -1;
	size_t n = strlen(field);
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, field, n) == 0 && line[n] == ':') {
			kb = strtol(line + n + 1, NULL, 10);
			break;
		}
	}
	fclose(f);
	return kb;
}

static double cpu_ms(void) {
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000.0 +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000.0;
}

/* ---- writing items -------------------------------------------------- */

struct load {
	cmn_spool_writer_t *writer;
	FILE *tokens_out;
	char token_store_path[4096];
	uint64_t messages;
};

/* The spool's folders as the package lays them out (the writer creates
 * none: it runs with the privileges of a delivery). */
static void make_spool_dirs(const char *spool) {
	char incoming[4096];
	snprintf(incoming, sizeof(incoming), "%s/incoming", spool);
	if ((mkdir(spool, 0711) < 0 && errno != EEXIST) ||
	    (mkdir(incoming, 01733) < 0 && errno != EEXIST) || chmod(incoming, 01733) < 0)
		die(spool, strdup(strerror(errno)));
}

static void load_open(struct load *l, const char *spool, const char *tokens_file, int durable) {
	char *err = NULL;
	memset(l, 0, sizeof(*l));
	make_spool_dirs(spool);
	l->writer = cmn_spool_writer_create(spool, durable, &err);
	if (l->writer == NULL)
		die("cmn_spool_writer_create", err);
	l->tokens_out = fopen(tokens_file, "w");
	if (l->tokens_out == NULL)
		die(tokens_file, strdup(strerror(errno)));
	/* Only read when the gateway answers 410, which it never does here. */
	snprintf(l->token_store_path, sizeof(l->token_store_path), "%s/../metadata.json", spool);
}

static void load_message(struct load *l) {
	char tokens[TOKENS_PER_MESSAGE][TOKEN_LEN + 1];
	const char *ptrs[TOKENS_PER_MESSAGE];
	size_t lens[TOKENS_PER_MESSAGE];
	char addr[64];
	char *err = NULL;
	for (int i = 0; i < TOKENS_PER_MESSAGE; i++) {
		make_token(tokens[i]);
		ptrs[i] = tokens[i];
		lens[i] = TOKEN_LEN;
		fprintf(l->tokens_out, "%s\n", tokens[i]);
	}
	snprintf(addr, sizeof(addr), "user%" PRIu64 "@bench.example", l->messages % 1000);
	if (cmn_spool_writer_enqueue(l->writer, addr, l->token_store_path, ptrs, lens,
	                             TOKENS_PER_MESSAGE, wall_ms(), &err) < 0)
		die("cmn_spool_writer_enqueue", err);
	l->messages++;
}

static void load_close(struct load *l) {
	cmn_spool_writer_destroy(l->writer);
	if (fclose(l->tokens_out) != 0)
		die("tokens file", strdup(strerror(errno)));
}

static int cmd_fill(const char *spool, uint64_t n, const char *tokens_file) {
	struct load l;
	int64_t t0 = mono_ms();
	/* A pre-filled spool: nothing to gain from an fsync per message here. */
	load_open(&l, spool, tokens_file, 0);
	while (l.messages * TOKENS_PER_MESSAGE < n)
		load_message(&l);
	load_close(&l);
	printf("{\"items\": %" PRIu64 ", \"token_bytes\": %d, \"fill_ms\": %" PRId64 "}\n",
	       l.messages * TOKENS_PER_MESSAGE, TOKEN_LEN, mono_ms() - t0);
	return 0;
}

/* ---- running the sender --------------------------------------------- */

struct event_counts {
	uint64_t warnings, errors;
	char last_problem[512];
};

static void count_event(void *ctx, const cmn_event_t *ev) {
	struct event_counts *c = ctx;
	/* BENCH_EVENTS=1: every event but the successes, to see why items retry. */
	static int show = -1;
	if (show < 0)
		show = getenv("BENCH_EVENTS") != NULL;
	if (show && ev->http_status != 200)
		fprintf(stderr, "event %d %s: %s (http %d, attempt %d)\n", ev->level,
		        ev->name != NULL ? ev->name : "-", ev->message, ev->http_status, ev->attempt);
	if (ev->level < CMN_LOG_WARNING)
		return;
	if (ev->level == CMN_LOG_WARNING)
		c->warnings++;
	else
		c->errors++;
	snprintf(c->last_problem, sizeof(c->last_problem), "%s", ev->message);
}

static cmn_sender_t *start_sender(const char *spool, const char *url, const char *ca) {
	cmn_sender_config_t config;
	char *err = NULL;
	cmn_sender_config_init(&config);
	config.url = url;
	config.spool_dir = spool;
	config.ca_file = ca;
	/* BENCH_SENDER_DURABLE=0: a diagnostic, to see what the fsyncs cost. */
	const char *durable = getenv("BENCH_SENDER_DURABLE");
	config.durable = durable == NULL || strcmp(durable, "0") != 0;
	config.timeout_ms = 10000;
	if (cmn_sender_config_validate(&config, &err) < 0)
		die("sender config", err);
	cmn_sender_t *sender = cmn_sender_start(&config, &err);
	if (sender == NULL)
		die("cmn_sender_start", err);
	return sender;
}

static uint64_t accounted(const cmn_sender_stats_t *s) {
	return s->sent + s->gone + s->dropped + s->pending + s->inflight;
}

static void json_stats(const char *key, const cmn_sender_stats_t *s, const struct event_counts *ev) {
	printf("\"%s\": {\"enqueued\": %" PRIu64 ", \"sent\": %" PRIu64 ", \"gone\": %" PRIu64
	       ", \"retried\": %" PRIu64 ", \"dropped\": %" PRIu64 ", \"coalesced\": %" PRIu64
	       ", \"quarantined\": %" PRIu64 ", \"pending\": %" PRIu64 ", \"inflight\": %" PRIu64
	       ", \"warnings\": %" PRIu64 ", \"errors\": %" PRIu64 "}",
	       key, s->enqueued, s->sent, s->gone, s->retried, s->dropped, s->coalesced,
	       s->quarantined, s->pending, s->inflight, ev->warnings, ev->errors);
}

static void stop_sender(cmn_sender_t *sender, const struct event_counts *ev) {
	if (cmn_sender_stop(sender, 5000) < 0)
		fprintf(stderr, "sender_bench: the sender did not stop within 5 s\n");
	if (ev->errors > 0 || ev->warnings > 0)
		fprintf(stderr, "sender_bench: %" PRIu64 " warnings, %" PRIu64 " errors, last: %s\n",
		        ev->warnings, ev->errors, ev->last_problem);
}

static int cmd_send(const char *spool, uint64_t n, const char *url, const char *ca, int idle_s) {
	struct event_counts ev = {0};
	cmn_sender_stats_t s;
	long rss_before = proc_status_kb("VmRSS");
	double t0 = mono_ms_f(), cpu0 = cpu_ms(), scheduled_ms = -1, sent_ms = -1;
	cmn_sender_t *sender = start_sender(spool, url, ca);
	for (;;) {
		cmn_sender_drain_events(sender, count_event, &ev);
		cmn_sender_get_stats(sender, &s);
		double now = mono_ms_f();
		if (scheduled_ms < 0 && (s.enqueued >= n || accounted(&s) >= n))
			scheduled_ms = now - t0;
		if (s.sent >= n) {
			sent_ms = now - t0;
			break;
		}
		if (now - t0 > SEND_TIMEOUT_MS(n))
			break;
		pause_ms(1);
	}
	double send_cpu_ms = cpu_ms() - cpu0;
	double idle_cpu_ms = -1;
	if (idle_s > 0 && sent_ms >= 0) {
		/* The measurement window itself: the main thread sleeps, so what the
		 * process burns is the sender's threads. */
		double c0 = cpu_ms();
		pause_ms(idle_s * 1000.0);
		idle_cpu_ms = cpu_ms() - c0;
		cmn_sender_drain_events(sender, count_event, &ev);
	}
	cmn_sender_get_stats(sender, &s);
	printf("{\"items\": %" PRIu64 ", \"ok\": %s, \"scheduled_ms\": %.1f, \"sent_ms\": %.1f, "
	       "\"tokens_per_s\": %.1f, \"rss_before_kb\": %ld, \"vmhwm_kb\": %ld, "
	       "\"send_cpu_ms\": %.1f, \"idle_s\": %d, \"idle_cpu_ms\": %.1f, ",
	       n, sent_ms >= 0 ? "true" : "false", scheduled_ms, sent_ms,
	       sent_ms > 0 ? (double)n * 1000.0 / sent_ms : 0.0, rss_before,
	       proc_status_kb("VmHWM"), send_cpu_ms, idle_s, idle_cpu_ms);
	json_stats("stats", &s, &ev);
	printf("}\n");
	fflush(stdout);
	stop_sender(sender, &ev);
	return sent_ms >= 0 ? 0 : 1;
}

/* ---- retry storm ----------------------------------------------------- */

static size_t discard_body(char *data, size_t size, size_t n, void *ctx) {
	(void)data;
	(void)ctx;
	return size * n;
}

static void gateway_mode(const char *control_base, const char *json) {
	char url[1024];
	snprintf(url, sizeof(url), "%s/control/mode", control_base);
	CURL *curl = curl_easy_init();
	struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDS, json);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L); /* our own local gateway */
	curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT, 10L);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard_body); /* stdout is ours */
	long status = 0;
	CURLcode rc = curl_easy_perform(curl);
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(headers);
	curl_easy_cleanup(curl);
	if (rc != CURLE_OK || status != 200)
		die("gateway control", strdup(rc != CURLE_OK ? curl_easy_strerror(rc) : "not 200"));
}

static int cmd_storm(const char *spool, const char *url, const char *control_base, double rate,
                     int pre_s, int outage_s, int post_s, const char *tokens_file, const char *ca) {
	struct event_counts ev = {0};
	struct load l;
	cmn_sender_stats_t s;
	make_spool_dirs(spool);
	cmn_sender_t *sender = start_sender(spool, url, ca);
	load_open(&l, spool, tokens_file, 1); /* like real deliveries */
	const double msg_interval_ms = 1000.0 * TOKENS_PER_MESSAGE / rate;
	const double t0 = mono_ms_f();
	const double outage_at = pre_s * 1000.0, recover_at = outage_at + outage_s * 1000.0;
	const double load_end = recover_at + post_s * 1000.0;
	int phase = 0; /* 0 before, 1 outage, 2 recovered */
	uint64_t pending_peak = 0, sent_at_outage = 0, sent_at_recovery = 0;
	double next_msg = 0, drained_ms = -1;
	for (;;) {
		double now = mono_ms_f() - t0;
		if (phase == 0 && now >= outage_at) {
			gateway_mode(control_base, "{\"status\": 500}");
			cmn_sender_get_stats(sender, &s);
			sent_at_outage = s.sent;
			phase = 1;
		} else if (phase == 1 && now >= recover_at) {
			gateway_mode(control_base, "{}");
			cmn_sender_get_stats(sender, &s);
			sent_at_recovery = s.sent;
			phase = 2;
		}
		while (now < load_end && next_msg <= now) {
			load_message(&l);
			next_msg += msg_interval_ms;
		}
		cmn_sender_drain_events(sender, count_event, &ev);
		cmn_sender_get_stats(sender, &s);
		if (s.pending + s.inflight > pending_peak)
			pending_peak = s.pending + s.inflight;
		uint64_t items = l.messages * TOKENS_PER_MESSAGE;
		if (now >= load_end && s.sent >= items) {
			drained_ms = now - recover_at;
			break;
		}
		if (now > load_end + SEND_TIMEOUT_MS(l.messages * TOKENS_PER_MESSAGE))
			break;
		pause_ms(now < load_end ? 1 : 5);
	}
	load_close(&l);
	cmn_sender_get_stats(sender, &s);
	printf("{\"items\": %" PRIu64 ", \"ok\": %s, \"rate\": %.0f, \"pre_s\": %d, \"outage_s\": %d, "
	       "\"post_s\": %d, \"sent_at_outage\": %" PRIu64 ", \"sent_at_recovery\": %" PRIu64
	       ", \"backlog_peak\": %" PRIu64 ", \"drained_after_recovery_ms\": %.0f, ",
	       l.messages * TOKENS_PER_MESSAGE, drained_ms >= 0 ? "true" : "false", rate, pre_s,
	       outage_s, post_s, sent_at_outage, sent_at_recovery, pending_peak, drained_ms);
	json_stats("stats", &s, &ev);
	printf("}\n");
	fflush(stdout);
	stop_sender(sender, &ev);
	return drained_ms >= 0 ? 0 : 1;
}

static void usage(void) {
	fprintf(stderr,
	        "usage: sender_bench fill SPOOL N TOKENS_FILE\n"
	        "       sender_bench send SPOOL N URL [CA] [IDLE_S]\n"
	        "       sender_bench storm SPOOL URL CONTROL_BASE RATE PRE_S OUTAGE_S POST_S "
	        "TOKENS_FILE [CA]\n");
	exit(2);
}

int main(int argc, char **argv) {
	if (argc < 2)
		usage();
	curl_global_init(CURL_GLOBAL_DEFAULT);
	const char *cmd = argv[1];
	if (strcmp(cmd, "fill") == 0 && argc == 5)
		return cmd_fill(argv[2], strtoull(argv[3], NULL, 10), argv[4]);
	if (strcmp(cmd, "send") == 0 && argc >= 5 && argc <= 7)
		return cmd_send(argv[2], strtoull(argv[3], NULL, 10), argv[4],
		                argc > 5 ? argv[5] : "", argc > 6 ? atoi(argv[6]) : 0);
	if (strcmp(cmd, "storm") == 0 && (argc == 10 || argc == 11))
		return cmd_storm(argv[2], argv[3], argv[4], atof(argv[5]), atoi(argv[6]),
		                 atoi(argv[7]), atoi(argv[8]), argv[9], argc > 10 ? argv[10] : "");
	usage();
	return 2;
}
