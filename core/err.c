// Strings of the error codes, generated from the same list as the enum.
#include "mqb/err.h"

const char *mqb_strerror(enum mqb_err err) {
    static const char *const strings[] = {
#define MQB_ERR_STR(name, str) str,
        MQB_ERRORS(MQB_ERR_STR)
#undef MQB_ERR_STR
    };
    if ((unsigned)err >= sizeof(strings) / sizeof(strings[0])) {
        return "unknown error";
    }
    return strings[err];
}
