/* chatmail-notify: the C surface of the notification core.
 *
 * Everything the Dovecot glue, the sender service and the doveadm plugin
 * use of the C++ core is declared here. Handles are opaque. No function
 * throws: every function that can fail takes `char **errptr` last; on
 * failure it returns -1 (or NULL) and stores a malloc()ed message in
 * *errptr (freeing a previous one), to be released with cmn_free().
 * Times are milliseconds since the Unix epoch (or durations in ms). */
#ifndef CHATMAIL_NOTIFY_H
#define CHATMAIL_NOTIFY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#define CMN_NOEXCEPT noexcept
#else
#define CMN_NOEXCEPT
#endif

void cmn_free(void *ptr) CMN_NOEXCEPT;

/* ---- settings values ---------------------------------------------- */

/* Dovecot-style time: "500ms", "8s", "8 secs", "2m", "5h", "90d", "1w";
 * a bare number is seconds. */
int cmn_parse_duration_ms(const char *text, int64_t *out_ms,
                          char **errptr) CMN_NOEXCEPT;
int cmn_parse_uint(const char *text, uint64_t *out, char **errptr) CMN_NOEXCEPT;
/* yes/no/true/false/1/0 (any case) */
int cmn_parse_bool(const char *text, int *out, char **errptr) CMN_NOEXCEPT;

/* ---- tokens --------------------------------------------------------- */

#define CMN_TOKEN_MAX_LEN 4096
/* Short, stable, non-reversible name of a token for logs and doveadm. */
#define CMN_TOKEN_HASH_LEN 12

/* 0 if the token is 1..4096 bytes of printable ASCII without space,
 * '"' or '\\'; -1 with a message naming the problem otherwise. */
int cmn_token_validate(const char *token, size_t len, char **errptr) CMN_NOEXCEPT;
void cmn_token_hash(const char *token, size_t len,
                    char out[CMN_TOKEN_HASH_LEN + 1]) CMN_NOEXCEPT;

/* ---- log records ---------------------------------------------------- */

enum cmn_log_level {
	CMN_LOG_DEBUG = 0,
	CMN_LOG_INFO,
	CMN_LOG_WARNING,
	CMN_LOG_ERROR,
};

/* A log line and, where `name` is set, a named event for stats. Strings
 * are valid only during the callback. Unused fields are NULL / -1. */
typedef struct cmn_event {
	enum cmn_log_level level;
	const char *name;       /* e.g. "chatmail_notify_send_finished" */
	const char *message;    /* human readable, never holds a clear token */
	const char *addr;       /* recipient address, or NULL */
	const char *token_hash; /* cmn_token_hash() of the token, or NULL */
	int http_status;        /* 0 = no HTTP answer, -1 = n/a */
	int attempt;            /* 0-based attempt number, -1 = n/a */
	int64_t count;          /* items affected (summaries), -1 = n/a */
} cmn_event_t;

/* Called on the caller's own thread only. */
typedef void cmn_event_func(void *ctx, const cmn_event_t *event);

/* ---- token store (metadata.json of one user) ------------------------ */

typedef struct cmn_token_store_options {
	int64_t ttl_ms;      /* tokens older than this are invalid; 0 = never */
	unsigned max_tokens; /* oldest dropped beyond this; 0 = unlimited */
	int64_t now_ms;      /* the current time */
	/* Warnings (corrupt file, legacy format converted) go here. */
	cmn_event_func *on_event;
	void *event_ctx;
} cmn_token_store_options_t;

/* Adds the token or refreshes its timestamp; keeps every other device's
 * token and every unknown key. */
int cmn_token_store_add(const char *path, const char *token, size_t len,
                        const cmn_token_store_options_t *opts,
                        char **errptr) CMN_NOEXCEPT;

typedef void cmn_token_func(void *ctx, const char *token, size_t len,
                            int64_t refreshed_ms);
/* Calls `cb` for each valid token in insertion order; returns how many
 * (0 when the file does not exist), or -1. */
int cmn_token_store_list(const char *path, const cmn_token_store_options_t *opts,
                         cmn_token_func *cb, void *cb_ctx,
                         char **errptr) CMN_NOEXCEPT;

/* Removes the token whose clear text (len > 0) or cmn_token_hash() (len ==
 * 0, `token` is the hash) matches. Returns 1 if removed, 0 if absent. */
int cmn_token_store_remove(const char *path, const char *token, size_t len,
                           const cmn_token_store_options_t *opts,
                           char **errptr) CMN_NOEXCEPT;

/* ---- spool writer (delivery side) ----------------------------------- */

typedef struct cmn_spool_writer cmn_spool_writer_t;

/* Nothing is opened until the first enqueue. One writer serves every
 * effective uid the process takes on. */
cmn_spool_writer_t *cmn_spool_writer_create(const char *spool_dir, int durable,
                                            char **errptr) CMN_NOEXCEPT;
void cmn_spool_writer_destroy(cmn_spool_writer_t *writer) CMN_NOEXCEPT;

/* Writes one item per token for a message delivered to `addr`, durably
 * (when `durable`) before it returns. `token_store_path` is where the
 * sender removes a token the gateway calls gone. */
int cmn_spool_writer_enqueue(cmn_spool_writer_t *writer, const char *addr,
                             const char *token_store_path,
                             const char *const *tokens, const size_t *token_lens,
                             size_t n_tokens, int64_t now_ms,
                             char **errptr) CMN_NOEXCEPT;

/* ---- sender --------------------------------------------------------- */

typedef struct cmn_sender cmn_sender_t;

typedef int64_t cmn_clock_func(void *ctx);

typedef struct cmn_sender_config {
	const char *url;
	const char *spool_dir;
	const char *ca_file;        /* NULL or "": the system's CAs */
	int64_t backoff_base_ms;    /* must be > 1000 */
	int64_t deadline_ms;
	int64_t timeout_ms;         /* per request */
	unsigned max_inflight;
	int durable;                /* fsync the spool */
	uint64_t max_items;         /* spool cap: deliveries refused beyond; 0 = none */
	cmn_clock_func *clock;      /* NULL: the real time */
	void *clock_ctx;
} cmn_sender_config_t;

/* Fills in the defaults of the plugin's documentation. */
void cmn_sender_config_init(cmn_sender_config_t *config) CMN_NOEXCEPT;
/* A clear message naming the bad setting, or 0. */
int cmn_sender_config_validate(const cmn_sender_config_t *config,
                               char **errptr) CMN_NOEXCEPT;

/* Starts the sender threads. They take the spool's sender lock (waiting
 * while another process holds it), recover the spool and send. */
cmn_sender_t *cmn_sender_start(const cmn_sender_config_t *config,
                               char **errptr) CMN_NOEXCEPT;
/* Readable whenever events wait; the host then calls drain. */
int cmn_sender_event_fd(cmn_sender_t *sender) CMN_NOEXCEPT;
size_t cmn_sender_drain_events(cmn_sender_t *sender, cmn_event_func *cb,
                               void *ctx) CMN_NOEXCEPT;

typedef struct cmn_sender_stats {
	uint64_t enqueued, sent, gone, retried, dropped, coalesced, quarantined;
	uint64_t pending, inflight;
} cmn_sender_stats_t;
void cmn_sender_get_stats(cmn_sender_t *sender, cmn_sender_stats_t *out) CMN_NOEXCEPT;

/* Stops and joins every thread; waits at most `timeout_ms` for requests in
 * flight (they stay in the spool). Frees the sender. Returns 0 when all
 * threads were joined in time, -1 otherwise (they are still joined). */
int cmn_sender_stop(cmn_sender_t *sender, int64_t timeout_ms) CMN_NOEXCEPT;
/* The same, and before the sender is freed, hands `cb` the records its
 * threads emitted while stopping (results of the last requests). */
int cmn_sender_stop_and_drain(cmn_sender_t *sender, int64_t timeout_ms,
                              cmn_event_func *cb, void *ctx) CMN_NOEXCEPT;

/* ---- spool inspection (doveadm) ------------------------------------- */

typedef struct cmn_spool_item_info {
	const char *addr;
	const char *token_hash;
	unsigned attempt;
	int64_t start_ms;   /* first enqueue (newest joined message) */
	int64_t due_ms;     /* next attempt */
	uid_t owner_uid;    /* uid that wrote the item */
	int accepted;       /* 1: owned by the sender, 0: not yet picked up */
} cmn_spool_item_info_t;

typedef void cmn_spool_item_func(void *ctx, const cmn_spool_item_info_t *item);
/* Reads the spool without changing it. `addr` NULL = every item. */
int cmn_spool_list(const char *spool_dir, const char *addr,
                   cmn_spool_item_func *cb, void *ctx, char **errptr) CMN_NOEXCEPT;

typedef struct cmn_spool_status {
	pid_t sender_pid;        /* 0 = no sender holds the spool */
	int64_t sender_started_ms;
	cmn_sender_stats_t stats; /* as last published by the sender */
	int64_t stats_ms;        /* when they were published */
} cmn_spool_status_t;
int cmn_spool_status(const char *spool_dir, cmn_spool_status_t *out,
                     char **errptr) CMN_NOEXCEPT;

/* Asks the running sender to make items due now. */
int cmn_spool_request_flush(const char *spool_dir, const char *addr,
                            char **errptr) CMN_NOEXCEPT;

#ifdef __cplusplus
}
#endif
#endif
