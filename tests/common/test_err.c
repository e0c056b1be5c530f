/* Unit tests for the one error list (common/err.h): every code has its own text, the codes
 * are contiguous, and errno values map to the codes that name the same failure. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "common/cairn.h"

Test(err, every_code_has_its_own_text)
{
    cr_assert_str_eq(cairn_strerror(CAIRN_OK), "success");
    for (int e = CAIRN_OK - 1; e > CAIRN_E_LAST; e--) {
        const char *t = cairn_strerror(e);

        cr_assert_str_neq(t, "unknown error", "code %d has no text", e);
        for (int f = e - 1; f > CAIRN_E_LAST; f--)
            cr_assert_str_neq(t, cairn_strerror(f), "codes %d and %d share a text", e, f);
    }
    cr_assert_str_eq(cairn_strerror(CAIRN_E_LAST), "unknown error");
    cr_assert_str_eq(cairn_strerror(1), "unknown error");
}

Test(err, codes_on_the_wire_keep_their_values)
{
    /* D-nodes answer with these numbers: the first ones must never move. */
    cr_assert_eq(CAIRN_ENOMEM, -1);
    cr_assert_eq(CAIRN_ENOENT, -4);
    cr_assert_eq(CAIRN_ECONFLICT, -8);
    cr_assert_eq(CAIRN_EDEGRADED, -17);
    cr_assert_eq(CAIRN_ENOTEMPTY, -18);
}

Test(err, errno_maps_to_the_same_failure)
{
    cr_assert_eq(cairn_from_errno(0), CAIRN_OK);
    cr_assert_eq(cairn_from_errno(ENOENT), CAIRN_ENOENT);
    cr_assert_eq(cairn_from_errno(-ENOENT), CAIRN_ENOENT);
    cr_assert_eq(cairn_from_errno(ENOTEMPTY), CAIRN_ENOTEMPTY);
    cr_assert_eq(cairn_from_errno(EACCES), CAIRN_EACCES);
    cr_assert_eq(cairn_from_errno(ECONNRESET), CAIRN_EUNREACH);
    cr_assert_eq(cairn_from_errno(EBADF), CAIRN_EIO);
}
