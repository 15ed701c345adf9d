/* The process's spool writer: one per process, shared by every user the
   process delivers to (it keeps a journal per effective uid open). */
#include "lib.h"
#include "chatmail-notify-spool-writer.h"

static cmn_spool_writer_t *spool_writer;
static char *spool_writer_dir;
static bool spool_writer_durable;

void chatmail_notify_spool_writer_deinit(void)
{
	if (spool_writer != NULL) {
		cmn_spool_writer_destroy(spool_writer);
		spool_writer = NULL;
		i_free(spool_writer_dir);
	}
}

cmn_spool_writer_t *
chatmail_notify_spool_writer_get(const struct chatmail_notify_user_settings *set,
				 const char **error_r)
{
	char *error = NULL;

	if (spool_writer != NULL &&
	    (strcmp(spool_writer_dir, set->spool_dir) != 0 ||
	     spool_writer_durable != set->durable)) {
		/* each enqueue is complete on return: switching loses nothing */
		chatmail_notify_spool_writer_deinit();
	}
	if (spool_writer == NULL) {
		spool_writer = cmn_spool_writer_create(set->spool_dir,
						       set->durable ? 1 : 0, &error);
		if (spool_writer == NULL) {
			*error_r = t_strdup(error == NULL ? "cannot create spool writer" : error);
			cmn_free(error);
			return NULL;
		}
		spool_writer_dir = i_strdup(set->spool_dir);
		spool_writer_durable = set->durable;
	}
	return spool_writer;
}
