#ifndef CHATMAIL_NOTIFY_DELIVER_H
#define CHATMAIL_NOTIFY_DELIVER_H

struct mailbox_vfuncs;

/* Installs the mail_deliver hook (in lmtp and dovecot-lda only). */
void chatmail_notify_deliver_init(void);
void chatmail_notify_deliver_deinit(void);

/* Wraps the commit of a box delivery saves to, to learn that the mail
   was stored. */
void chatmail_notify_deliver_mailbox_allocated(struct mailbox_vfuncs *v);

#endif
