#include "qkv.h"

const char *qkv_status_str(qkv_status s)
{
    switch (s) {
    case QKV_OK:            return "ok";
    case QKV_E_NULL:        return "a required pointer is NULL";
    case QKV_E_SHAPE:       return "a size is <= 0, or shapes or strides disagree";
    case QKV_E_OVERFLOW:    return "a size or byte-count product overflows";
    case QKV_E_ALIAS:       return "an output overlaps an input";
    case QKV_E_ARG:         return "an argument is out of range";
    case QKV_E_NOMEM:       return "out of memory";
    case QKV_E_UNSUPPORTED: return "not supported by this CPU or build";
    }
    return "unknown qkv_status";
}
