#ifndef CHATMAIL_NOTIFY_PLUGIN_H
#define CHATMAIL_NOTIFY_PLUGIN_H

#include "module-context.h"
#include "mail-user.h"
#include "mail-storage-private.h"
#include "chatmail-notify-settings.h"

#define CHATMAIL_NOTIFY_VISIBLE __attribute__((visibility("default")))

/* Present only for users whose settings are valid: a user without it is
   left alone entirely (metadata and delivery pass through untouched). */
struct chatmail_notify_user {
	union mail_user_module_context module_ctx;
	struct event *event;
	struct chatmail_notify_user_settings set;
	/* the user's metadata.json, %-expanded */
	const char *token_file;

	/* The delivery in progress (set by the deliver hook): one
	   notification once the mail is stored anywhere. */
	bool delivery_armed;
	bool delivery_notified;
	bool delivery_from_self;
};

struct chatmail_notify_mailbox {
	union mailbox_module_context module_ctx;
};

#define CHATMAIL_NOTIFY_USER_CONTEXT(obj) \
	MODULE_CONTEXT(obj, chatmail_notify_user_module)
#define CHATMAIL_NOTIFY_MAILBOX_CONTEXT_REQUIRE(obj) \
	MODULE_CONTEXT_REQUIRE(obj, chatmail_notify_storage_module)

extern MODULE_CONTEXT_DEFINE(chatmail_notify_user_module, &mail_user_module_register);
extern MODULE_CONTEXT_DEFINE(chatmail_notify_storage_module, &mail_storage_module_register);

/* Token store options of the user, at the current time. */
void chatmail_notify_user_token_options(struct chatmail_notify_user *nuser,
					cmn_token_store_options_t *opts_r);
int64_t chatmail_notify_now_ms(void);

void chatmail_notify_plugin_init(struct module *module) CHATMAIL_NOTIFY_VISIBLE;
void chatmail_notify_plugin_deinit(void) CHATMAIL_NOTIFY_VISIBLE;
extern const char *chatmail_notify_plugin_version CHATMAIL_NOTIFY_VISIBLE;
extern const char *chatmail_notify_plugin_dependencies[] CHATMAIL_NOTIFY_VISIBLE;

#endif
