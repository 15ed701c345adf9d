#ifndef CHATMAIL_NOTIFY_METADATA_H
#define CHATMAIL_NOTIFY_METADATA_H

struct mailbox_vfuncs;

/* Takes over INBOX's private "devicetoken" entry: set adds a token to the
   user's token store, get answers the valid tokens. Every other key and
   mailbox passes through. */
void chatmail_notify_metadata_mailbox_allocated(struct mailbox_vfuncs *v);

#endif
