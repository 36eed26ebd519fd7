#include "ioc/common.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "err.h"

int
ioc_err_set(struct ioc_err *err, int code, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || err->code != 0) {
        return code;
    }
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return code;
}

void
ioc_err_clear(struct ioc_err *err)
{
    if (err != NULL) {
        err->code = 0;
        err->msg[0] = '\0';
    }
}
