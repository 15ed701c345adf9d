/* Delivery: one notification per recipient per stored message.

   The mail_deliver hook only arms the recipient's user: whether the mail
   gets stored is decided later (Sieve, or Dovecot's default save after the
   hook returned). The first successful commit of a save into a box that a
   delivery opened (MAILBOX_FLAG_POST_SESSION) enqueues the notification;
   further saves of the same delivery (fileinto A, fileinto B, keep) do
   not. Nothing stored (discard, quota, error) means no notification. */
#include "lib.h"
#include "array.h"
#include "str.h"
#include "smtp-address.h"
#include "mail-deliver.h"
#include "chatmail-notify-plugin.h"
#include "chatmail-notify-log.h"
#include "chatmail-notify-spool-writer.h"
#include "chatmail-notify-deliver.h"

/* libdovecot-lda is in lmtp and dovecot-lda only: imap and doveadm load
   the plugin without it. */
#pragma weak mail_deliver_hook_set
#pragma weak mail_deliver_get_address

struct delivery_tokens {
	ARRAY(const char *) tokens;
	ARRAY(size_t) lens;
	string_t *hashes;
};

static deliver_mail_func_t *next_deliver_mail;
static bool deliver_hook_installed;

static void delivery_token_add(void *ctx, const char *token, size_t len,
			       int64_t refreshed_ms ATTR_UNUSED)
{
	struct delivery_tokens *tokens = ctx;
	char hash[CMN_TOKEN_HASH_LEN + 1];
	const char *copy = t_strndup(token, len);

	array_push_back(&tokens->tokens, &copy);
	array_push_back(&tokens->lens, &len);
	cmn_token_hash(token, len, hash);
	if (str_len(tokens->hashes) > 0)
		str_append_c(tokens->hashes, ' ');
	str_append(tokens->hashes, hash);
}

static void enqueue_failed(struct event *event, const char *reason)
{
	event_add_str(event, "error", reason);
	event_set_name(event, "chatmail_notify_enqueue_failed");
	e_error(event, "notification lost, mail delivered anyway: %s", reason);
}

/* `event` is created when the delivery was stored: its duration is the
   time the notification added to the delivery. */
static void delivery_enqueue(struct mail_user *user,
			     struct chatmail_notify_user *nuser,
			     struct event *event)
{
	struct delivery_tokens tokens;
	cmn_token_store_options_t opts;
	cmn_spool_writer_t *writer;
	const char *reason = NULL;
	char *error = NULL;
	int count;

	t_array_init(&tokens.tokens, 8);
	t_array_init(&tokens.lens, 8);
	tokens.hashes = t_str_new(128);
	chatmail_notify_user_token_options(nuser, &opts);
	count = cmn_token_store_list(nuser->token_file, &opts, delivery_token_add,
				     &tokens, &error);
	if (count < 0) {
		enqueue_failed(event, t_strdup_printf("reading %s: %s",
			nuser->token_file, error));
		cmn_free(error);
		return;
	}
	if (count == 0) {
		e_debug(event, "no device token registered");
		return;
	}
	if ((writer = chatmail_notify_spool_writer_get(&nuser->set, &reason)) == NULL) {
		enqueue_failed(event, reason);
		return;
	}
	if (cmn_spool_writer_enqueue(writer, user->username, nuser->token_file,
				     array_front(&tokens.tokens),
				     array_front(&tokens.lens), (size_t)count,
				     opts.now_ms, &error) < 0) {
		enqueue_failed(event, t_strdup_printf("%s (tokens %s)", error,
						      str_c(tokens.hashes)));
		cmn_free(error);
		return;
	}
	event_add_int(event, "tokens", count);
	event_set_name(event, "chatmail_notify_enqueued");
	e_info(event, "notification queued for %d device(s): %s",
	       count, str_c(tokens.hashes));
}

static void delivery_stored(struct mail_user *user)
{
	struct chatmail_notify_user *nuser = CHATMAIL_NOTIFY_USER_CONTEXT(user);
	struct event *event;

	if (nuser == NULL || !nuser->delivery_armed || nuser->delivery_notified)
		return;
	nuser->delivery_notified = TRUE;
	if (nuser->delivery_from_self) {
		e_debug(nuser->event, "sent by the user to themself: no notification");
		return;
	}
	event = event_create(nuser->event);
	event_add_str(event, "user", user->username);
	T_BEGIN {
		delivery_enqueue(user, nuser, event);
	} T_END;
	event_unref(&event);
}

static int
delivery_transaction_commit(struct mailbox_transaction_context *t,
			    struct mail_transaction_commit_changes *changes_r)
{
	struct mailbox *box = t->box;
	struct chatmail_notify_mailbox *nbox =
		CHATMAIL_NOTIFY_MAILBOX_CONTEXT_REQUIRE(box);
	bool saved = t->save_count > 0;

	/* t is freed by the commit */
	if (nbox->module_ctx.super.transaction_commit(t, changes_r) < 0)
		return -1;
	if (saved)
		delivery_stored(box->storage->user);
	return 0;
}

void chatmail_notify_deliver_mailbox_allocated(struct mailbox_vfuncs *v)
{
	v->transaction_commit = delivery_transaction_commit;
}

static bool address_is(const char *address, const struct smtp_address *other)
{
	return other != NULL && strcasecmp(address, smtp_address_encode(other)) == 0;
}

static bool delivery_is_from_self(struct mail_deliver_context *ctx,
				  struct mail_user *user)
{
	const struct smtp_address *from =
		mail_deliver_get_address(ctx->src_mail, "From");

	if (from == NULL)
		return FALSE;
	return strcasecmp(smtp_address_encode(from), user->username) == 0 ||
		address_is(smtp_address_encode(from), ctx->rcpt_to);
}

static int chatmail_notify_deliver_mail(struct mail_deliver_context *ctx,
					struct mail_storage **storage_r)
{
	struct chatmail_notify_user *nuser = ctx->rcpt_user == NULL ? NULL :
		CHATMAIL_NOTIFY_USER_CONTEXT(ctx->rcpt_user);

	if (nuser != NULL) {
		nuser->delivery_armed = TRUE;
		nuser->delivery_notified = FALSE;
		nuser->delivery_from_self = nuser->set.skip_self &&
			delivery_is_from_self(ctx, ctx->rcpt_user);
	}
	if (next_deliver_mail != NULL)
		return next_deliver_mail(ctx, storage_r);
	/* not handled: Dovecot saves to the default mailbox */
	return 0;
}

void chatmail_notify_deliver_init(void)
{
	if (mail_deliver_hook_set == NULL)
		return;
	next_deliver_mail = mail_deliver_hook_set(chatmail_notify_deliver_mail);
	deliver_hook_installed = TRUE;
}

void chatmail_notify_deliver_deinit(void)
{
	if (deliver_hook_installed) {
		mail_deliver_hook_set(next_deliver_mail);
		deliver_hook_installed = FALSE;
	}
	chatmail_notify_spool_writer_deinit();
}
