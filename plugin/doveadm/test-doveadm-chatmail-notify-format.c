/* How doveadm chatmail-notify writes times and durations. */

#include "lib.h"
#include "time-util.h"
#include "doveadm-chatmail-notify.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <time.h>
#include <cmocka.h>

/* cmocka's failures longjmp: no data stack frame may be open then. */
static void assert_duration(int64_t ms, const char *expected)
{
	char text[64];

	T_BEGIN {
		i_strocpy(text, doveadm_chatmail_notify_duration(ms), sizeof(text));
	} T_END;
	if (strcmp(text, expected) != 0) {
		fail_msg("%"PRId64" ms was written '%s', expected '%s'",
			 ms, text, expected);
	}
}

static void test_below_a_second_counts_milliseconds(void **state ATTR_UNUSED)
{
	assert_duration(0, "0ms");
	assert_duration(999, "999ms");
}

static void test_below_a_minute_counts_seconds(void **state ATTR_UNUSED)
{
	assert_duration(1000, "1s");
	assert_duration(59999, "59s");
}

static void test_longer_durations_have_two_units(void **state ATTR_UNUSED)
{
	assert_duration(60 * 1000, "1m00s");
	assert_duration((59 * 60 + 59) * 1000LL, "59m59s");
	assert_duration(3600 * 1000LL, "1h00m");
	assert_duration((23 * 3600 + 59 * 60 + 59) * 1000LL, "23h59m");
	assert_duration(86400 * 1000LL, "1d00h");
	assert_duration(90 * 86400 * 1000LL + 5 * 3600 * 1000LL, "90d05h");
}

static void test_negative_durations_keep_their_sign(void **state ATTR_UNUSED)
{
	assert_duration(-1500, "-1s");
	assert_duration(-3600 * 1000LL, "-1h00m");
}

static void test_times_are_local_and_unset_is_a_dash(void **state ATTR_UNUSED)
{
	char text[64], expected[64], unset[8];

	T_BEGIN {
		i_strocpy(text, doveadm_chatmail_notify_time(1796400000000LL),
			  sizeof(text));
		i_strocpy(expected, t_strflocaltime("%Y-%m-%d %H:%M:%S",
						    1796400000), sizeof(expected));
		i_strocpy(unset, doveadm_chatmail_notify_time(0), sizeof(unset));
	} T_END;
	assert_int_equal(strlen(text), strlen("2026-12-04 16:00:00"));
	assert_string_equal(text, expected);
	assert_string_equal(unset, "-");
}

static void test_now_is_near_the_system_clock(void **state ATTR_UNUSED)
{
	int64_t now_ms = doveadm_chatmail_notify_now_ms();
	int64_t system_ms = (int64_t)time(NULL) * 1000;

	assert_true(now_ms >= system_ms - 1000 && now_ms <= system_ms + 2000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_below_a_second_counts_milliseconds),
		cmocka_unit_test(test_below_a_minute_counts_seconds),
		cmocka_unit_test(test_longer_durations_have_two_units),
		cmocka_unit_test(test_negative_durations_keep_their_sign),
		cmocka_unit_test(test_times_are_local_and_unset_is_a_dash),
		cmocka_unit_test(test_now_is_near_the_system_clock),
	};
	int ret;

	lib_init();
	ret = cmocka_run_group_tests(tests, NULL, NULL);
	lib_deinit();
	return ret;
}
