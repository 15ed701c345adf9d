/* INBOX's /private/devicetoken entry, kept in the user's token store
   (chatmail's metadata.json) instead of the attribute dict. */
#include "lib.h"
#include "str.h"
#include "chatmail-notify-plugin.h"
#include "mailbox-attribute-private.h"
#include "chatmail-notify-metadata.h"

#define DEVICETOKEN_KEY "devicetoken"

struct devicetoken_iter {
	struct mailbox_attribute_iter iter;
	struct mailbox_attribute_iter *super;
	bool devicetoken_pending;
};

static struct chatmail_notify_user *box_user(struct mailbox *box)
{
	return CHATMAIL_NOTIFY_USER_CONTEXT(box->storage->user);
}

static bool is_devicetoken(enum mail_attribute_type type_flags, const char *key)
{
	return (type_flags & MAIL_ATTRIBUTE_TYPE_MASK) == MAIL_ATTRIBUTE_TYPE_PRIVATE &&
		strcasecmp(key, DEVICETOKEN_KEY) == 0;
}

static void token_append(void *ctx, const char *token, size_t len,
			 int64_t refreshed_ms ATTR_UNUSED)
{
	string_t *tokens = ctx;

	if (str_len(tokens) > 0)
		str_append_c(tokens, ' ');
	str_append_data(tokens, token, len);
}

/* The valid tokens joined by one space, on the data stack; returns how
   many, or -1 with the storage error set. */
static int devicetoken_read(struct mailbox *box, string_t *tokens)
{
	struct chatmail_notify_user *nuser = box_user(box);
	cmn_token_store_options_t opts;
	char *error = NULL;
	int count;

	chatmail_notify_user_token_options(nuser, &opts);
	count = cmn_token_store_list(nuser->token_file, &opts, token_append,
				     tokens, &error);
	if (count < 0) {
		mail_storage_set_critical(box->storage,
			"chatmail-notify: reading %s failed: %s",
			nuser->token_file, error);
		cmn_free(error);
	}
	return count;
}

static int devicetoken_store(struct mailbox *box, const char *token)
{
	struct chatmail_notify_user *nuser = box_user(box);
	char hash[CMN_TOKEN_HASH_LEN + 1];
	cmn_token_store_options_t opts;
	size_t len = strlen(token);
	char *error = NULL;

	if (cmn_token_validate(token, len, &error) < 0) {
		mail_storage_set_error(box->storage, MAIL_ERROR_PARAMS,
			t_strdup_printf("Invalid device token: %s",
					error == NULL ? "rejected" : error));
		e_info(nuser->event, "device token rejected: %s", error);
		cmn_free(error);
		return -1;
	}
	cmn_token_hash(token, len, hash);
	chatmail_notify_user_token_options(nuser, &opts);
	if (cmn_token_store_add(nuser->token_file, token, len, &opts, &error) < 0) {
		mail_storage_set_critical(box->storage,
			"chatmail-notify: storing device token %s in %s failed: %s",
			hash, nuser->token_file, error);
		cmn_free(error);
		return -1;
	}
	e_info(nuser->event, "device token %s registered", hash);
	return 0;
}

static int
devicetoken_attribute_set(struct mailbox_transaction_context *t,
			  enum mail_attribute_type type_flags, const char *key,
			  const struct mail_attribute_value *value)
{
	struct mailbox *box = t->box;
	struct chatmail_notify_mailbox *nbox =
		CHATMAIL_NOTIFY_MAILBOX_CONTEXT_REQUIRE(box);
	const char *token;

	if (!is_devicetoken(type_flags, key))
		return nbox->module_ctx.super.attribute_set(t, type_flags, key, value);
	/* value_stream: a LITERAL+ value */
	if (mailbox_attribute_value_to_string(box->storage, value, &token) < 0)
		return -1;
	/* NIL: chatmail never unregisters a device this way */
	if (token == NULL)
		return 0;
	return devicetoken_store(box, token);
}

static int
devicetoken_attribute_get(struct mailbox *box,
			  enum mail_attribute_type type_flags, const char *key,
			  struct mail_attribute_value *value_r)
{
	struct chatmail_notify_mailbox *nbox =
		CHATMAIL_NOTIFY_MAILBOX_CONTEXT_REQUIRE(box);
	string_t *tokens;
	int count;

	if (!is_devicetoken(type_flags, key))
		return nbox->module_ctx.super.attribute_get(box, type_flags, key, value_r);
	i_zero(value_r);
	tokens = t_str_new(256);
	count = devicetoken_read(box, tokens);
	if (count <= 0)
		return count;
	value_r->value = str_c(tokens);
	return 1;
}

static struct mailbox_attribute_iter *
devicetoken_attribute_iter_init(struct mailbox *box,
				enum mail_attribute_type type_flags,
				const char *prefix)
{
	struct chatmail_notify_mailbox *nbox =
		CHATMAIL_NOTIFY_MAILBOX_CONTEXT_REQUIRE(box);
	struct devicetoken_iter *iter = i_new(struct devicetoken_iter, 1);

	iter->iter.box = box;
	iter->super = nbox->module_ctx.super.attribute_iter_init(box, type_flags, prefix);
	if ((type_flags & MAIL_ATTRIBUTE_TYPE_MASK) == MAIL_ATTRIBUTE_TYPE_PRIVATE &&
	    strncasecmp(DEVICETOKEN_KEY, prefix, strlen(prefix)) == 0) T_BEGIN {
		/* listed only when it has a value, as the dict would */
		iter->devicetoken_pending = devicetoken_read(box, t_str_new(256)) > 0;
	} T_END;
	return &iter->iter;
}

static const char *
devicetoken_attribute_iter_next(struct mailbox_attribute_iter *_iter)
{
	struct devicetoken_iter *iter = (struct devicetoken_iter *)_iter;
	struct chatmail_notify_mailbox *nbox =
		CHATMAIL_NOTIFY_MAILBOX_CONTEXT_REQUIRE(_iter->box);
	const char *key;

	if (iter->devicetoken_pending) {
		iter->devicetoken_pending = FALSE;
		return DEVICETOKEN_KEY;
	}
	/* a value left in the dict from before the plugin is not ours to show */
	do {
		key = nbox->module_ctx.super.attribute_iter_next(iter->super);
	} while (key != NULL && strcasecmp(key, DEVICETOKEN_KEY) == 0);
	return key;
}

static int devicetoken_attribute_iter_deinit(struct mailbox_attribute_iter *_iter)
{
	struct devicetoken_iter *iter = (struct devicetoken_iter *)_iter;
	struct chatmail_notify_mailbox *nbox =
		CHATMAIL_NOTIFY_MAILBOX_CONTEXT_REQUIRE(_iter->box);
	int ret = nbox->module_ctx.super.attribute_iter_deinit(iter->super);

	i_free(iter);
	return ret;
}

void chatmail_notify_metadata_mailbox_allocated(struct mailbox_vfuncs *v)
{
	v->attribute_set = devicetoken_attribute_set;
	v->attribute_get = devicetoken_attribute_get;
	v->attribute_iter_init = devicetoken_attribute_iter_init;
	v->attribute_iter_next = devicetoken_attribute_iter_next;
	v->attribute_iter_deinit = devicetoken_attribute_iter_deinit;
}
