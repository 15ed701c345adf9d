/* Times and durations as an operator reads them. */

#include "lib.h"
#include "time-util.h"
#include "doveadm-chatmail-notify.h"

#include <sys/time.h>

int64_t doveadm_chatmail_notify_now_ms(void)
{
	struct timeval tv;

	i_gettimeofday(&tv);
	return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

const char *doveadm_chatmail_notify_time(int64_t unix_ms)
{
	if (unix_ms <= 0)
		return "-";
	/* the format of doveadm's unixdate2str(), without needing doveadm */
	return t_strflocaltime("%Y-%m-%d %H:%M:%S", (time_t)(unix_ms / 1000));
}

const char *doveadm_chatmail_notify_duration(int64_t ms)
{
	const char *sign = "";
	uint64_t secs;

	if (ms < 0) {
		sign = "-";
		ms = -ms;
	}
	if (ms < 1000)
		return t_strdup_printf("%s%"PRId64"ms", sign, ms);
	secs = (uint64_t)ms / 1000;
	if (secs < 60)
		return t_strdup_printf("%s%"PRIu64"s", sign, secs);
	if (secs < 3600) {
		return t_strdup_printf("%s%"PRIu64"m%02"PRIu64"s", sign,
				       secs / 60, secs % 60);
	}
	if (secs < 86400) {
		return t_strdup_printf("%s%"PRIu64"h%02"PRIu64"m", sign,
				       secs / 3600, secs % 3600 / 60);
	}
	return t_strdup_printf("%s%"PRIu64"d%02"PRIu64"h", sign,
			       secs / 86400, secs % 86400 / 3600);
}
