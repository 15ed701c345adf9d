#ifndef CHATMAIL_NOTIFY_SPOOL_WRITER_H
#define CHATMAIL_NOTIFY_SPOOL_WRITER_H

#include "chatmail-notify-settings.h"

/* The writer for the user's spool settings, created on first use (and
   again if they differ from the previous user's). NULL with *error_r
   (data stack) when it cannot be created. */
cmn_spool_writer_t *
chatmail_notify_spool_writer_get(const struct chatmail_notify_user_settings *set,
				 const char **error_r);
void chatmail_notify_spool_writer_deinit(void);

#endif
