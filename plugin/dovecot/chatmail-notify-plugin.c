/* chatmail-notify: Delta Chat push notifications from Dovecot.

   Enable in every protocol (imap registers tokens, lmtp/lda notify,
   doveadm reads and sets tokens):

     mail_plugins = $mail_plugins chatmail_notify
     imap_metadata = yes
     mail_attribute_dict = file:%h/dovecot-attributes
     imap_capability = +XDELTAPUSH XCHATMAIL

     plugin {
       # read by the sender service, from the global configuration only:
       #chatmail_notify_url = https://notifications.delta.chat/notify
       #chatmail_notify_spool_dir = /var/spool/dovecot-chatmail-notify
       #chatmail_notify_backoff_base = 8s
       #chatmail_notify_deadline = 5h
       #chatmail_notify_timeout = 60s
       #chatmail_notify_max_inflight = 100
       #chatmail_notify_ca_file =            (system CAs)
       #chatmail_notify_spool_max_items = 1000000
       # per user, may come from userdb:
       #chatmail_notify_token_file = %h/metadata.json
       #chatmail_notify_token_ttl = 90d
       #chatmail_notify_max_tokens = 32
       #chatmail_notify_skip_self = yes
       # "no" is UNSAFE (a crash can lose notifications): benchmarks/tests only
       #chatmail_notify_fsync = yes
     }

     # hosts the sender threads; no listeners, kept alive by the master
     service chatmail-notify-sender {
       executable = /usr/lib/dovecot/chatmail-notify-sender
       process_min_avail = 1
       process_limit = 1
       # Runs as root by default: it must read spool items of every mail
       # uid and removes a gone token as the uid that wrote the item.
       # Sites with a single mail uid may set: user = vmail
     }

   The delivering processes and the sender must see the same
   chatmail_notify_spool_dir (and chatmail_notify_fsync). A bad value of a
   setting is logged once per user, naming the setting; the plugin then
   stays inert for that user: mail is delivered and METADATA goes to
   Dovecot's own storage as if the plugin were not loaded. */
#include "lib.h"
#include "time-util.h"
#include "mail-storage-hooks.h"
#include "chatmail-notify-plugin.h"
#include "chatmail-notify-log.h"
#include "chatmail-notify-metadata.h"
#include "chatmail-notify-deliver.h"

const char *chatmail_notify_plugin_version = DOVECOT_ABI_VERSION;
const char *chatmail_notify_plugin_dependencies[] = { NULL };

struct chatmail_notify_user_module chatmail_notify_user_module =
	MODULE_CONTEXT_INIT(&mail_user_module_register);
struct chatmail_notify_storage_module chatmail_notify_storage_module =
	MODULE_CONTEXT_INIT(&mail_storage_module_register);

int64_t chatmail_notify_now_ms(void)
{
	struct timeval now;

	i_gettimeofday(&now);
	return (int64_t)now.tv_sec * 1000 + now.tv_usec / 1000;
}

void chatmail_notify_user_token_options(struct chatmail_notify_user *nuser,
					cmn_token_store_options_t *opts_r)
{
	i_zero(opts_r);
	opts_r->ttl_ms = nuser->set.token_ttl_ms;
	opts_r->max_tokens = nuser->set.max_tokens;
	opts_r->now_ms = chatmail_notify_now_ms();
	opts_r->on_event = chatmail_notify_log_record_func;
	opts_r->event_ctx = nuser->event;
}

static const char *user_getenv(const char *name, void *context)
{
	return mail_user_plugin_getenv(context, name);
}

static int user_token_file(struct mail_user *user,
			   const struct chatmail_notify_user_settings *set,
			   const char **path_r, const char **error_r)
{
	const char *home;

	if (set->token_file != NULL) {
		*path_r = set->token_file;
		return 0;
	}
	if (mail_user_get_home(user, &home) <= 0 || home == NULL || *home == '\0') {
		*error_r = "the user has no home directory: "
			"set chatmail_notify_token_file";
		return -1;
	}
	*path_r = p_strconcat(user->pool, home, "/",
			      CHATMAIL_NOTIFY_DEFAULT_TOKEN_FILE_NAME, NULL);
	return 0;
}

static void chatmail_notify_user_deinit(struct mail_user *user)
{
	struct chatmail_notify_user *nuser = CHATMAIL_NOTIFY_USER_CONTEXT(user);

	event_unref(&nuser->event);
	nuser->module_ctx.super.deinit(user);
}

static void chatmail_notify_mail_user_created(struct mail_user *user)
{
	struct mail_user_vfuncs *v = user->vlast;
	struct chatmail_notify_user_settings set;
	struct chatmail_notify_user *nuser;
	const char *token_file, *error;

	/* the raw user of a delivery, or a shared namespace's owner */
	if (user->autocreated)
		return;
	if (chatmail_notify_user_settings_parse(user->pool, user_getenv, user,
						&set, &error) < 0 ||
	    user_token_file(user, &set, &token_file, &error) < 0) {
		e_error(user->event, "chatmail-notify: disabled for this user: %s",
			error);
		return;
	}

	nuser = p_new(user->pool, struct chatmail_notify_user, 1);
	nuser->module_ctx.super = *v;
	user->vlast = &nuser->module_ctx.super;
	v->deinit = chatmail_notify_user_deinit;
	nuser->set = set;
	nuser->token_file = token_file;
	nuser->event = chatmail_notify_event_create(user->event);
	MODULE_CONTEXT_SET(user, chatmail_notify_user_module, nuser);
}

static void chatmail_notify_mailbox_allocated(struct mailbox *box)
{
	struct mailbox_vfuncs *v = box->vlast;
	struct chatmail_notify_mailbox *nbox;
	bool metadata, delivery;

	if (CHATMAIL_NOTIFY_USER_CONTEXT(box->storage->user) == NULL)
		return;
	metadata = box->inbox_user;
	delivery = (box->flags & MAILBOX_FLAG_POST_SESSION) != 0;
	if (!metadata && !delivery)
		return;

	nbox = p_new(box->pool, struct chatmail_notify_mailbox, 1);
	nbox->module_ctx.super = *v;
	box->vlast = &nbox->module_ctx.super;
	MODULE_CONTEXT_SET(box, chatmail_notify_storage_module, nbox);
	if (metadata)
		chatmail_notify_metadata_mailbox_allocated(v);
	if (delivery)
		chatmail_notify_deliver_mailbox_allocated(v);
}

static struct mail_storage_hooks chatmail_notify_mail_storage_hooks = {
	.mail_user_created = chatmail_notify_mail_user_created,
	.mailbox_allocated = chatmail_notify_mailbox_allocated,
};

void chatmail_notify_plugin_init(struct module *module)
{
	mail_storage_hooks_add(module, &chatmail_notify_mail_storage_hooks);
	chatmail_notify_deliver_init();
}

void chatmail_notify_plugin_deinit(void)
{
	chatmail_notify_deliver_deinit();
	mail_storage_hooks_remove(&chatmail_notify_mail_storage_hooks);
}
