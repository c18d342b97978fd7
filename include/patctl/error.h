/* patctl error codes: every library function returns 0 (PATCTL_OK) or one of
 * these negative codes; patctl_strerror() names them.  Header-only so that
 * device plugins and the device-side library can use it without linking. */
#ifndef PATCTL_ERROR_H
#define PATCTL_ERROR_H

enum patctl_error {
    PATCTL_OK               = 0,
    PATCTL_ERR_ARG          = -1,  /* invalid argument or option */
    PATCTL_ERR_NOMEM        = -2,  /* allocation failed */
    PATCTL_ERR_IO           = -3,  /* file or stream I/O failed */
    PATCTL_ERR_FORMAT       = -4,  /* malformed file, frame or reply */
    PATCTL_ERR_DEVICE       = -5,  /* the device reported a failure */
    PATCTL_ERR_TIMEOUT      = -6,  /* no reply in time */
    PATCTL_ERR_LIMIT        = -7,  /* a value outside its hard limits (reject policy) */
    PATCTL_ERR_NONFINITE    = -8,  /* NaN or Inf where a finite number is required */
    PATCTL_ERR_ABI          = -9,  /* plugin ABI version mismatch or missing symbol */
    PATCTL_ERR_UNSUPPORTED  = -10, /* the driver does not offer this operation */
    PATCTL_ERR_NOT_FOUND    = -11, /* no such driver, file, run or key */
    PATCTL_ERR_PROTOCOL     = -12, /* wire protocol violation */
    PATCTL_ERR_DISCONNECTED = -13, /* the link to the device is gone */
    PATCTL_ERR_INTERRUPTED  = -14, /* stopped by a signal */
    PATCTL_ERR_CONFIG       = -15, /* bad configuration */
    PATCTL_ERR_NUMERIC      = -16, /* numerical failure (diverged, singular) */
    PATCTL_ERR_STATE        = -17, /* call not valid in the current state */
    PATCTL_ERR_AUTH         = -18, /* the peer refused our credentials (CURVE key) */
};

static inline const char *patctl_strerror(int err)
{
    switch (err) {
    case PATCTL_OK:               return "success";
    case PATCTL_ERR_ARG:          return "invalid argument";
    case PATCTL_ERR_NOMEM:        return "out of memory";
    case PATCTL_ERR_IO:           return "I/O error";
    case PATCTL_ERR_FORMAT:       return "malformed data";
    case PATCTL_ERR_DEVICE:       return "device failure";
    case PATCTL_ERR_TIMEOUT:      return "timed out";
    case PATCTL_ERR_LIMIT:        return "value outside hard limits";
    case PATCTL_ERR_NONFINITE:    return "NaN or Inf value";
    case PATCTL_ERR_ABI:          return "plugin ABI mismatch";
    case PATCTL_ERR_UNSUPPORTED:  return "operation not supported";
    case PATCTL_ERR_NOT_FOUND:    return "not found";
    case PATCTL_ERR_PROTOCOL:     return "protocol error";
    case PATCTL_ERR_DISCONNECTED: return "disconnected";
    case PATCTL_ERR_INTERRUPTED:  return "interrupted";
    case PATCTL_ERR_CONFIG:       return "configuration error";
    case PATCTL_ERR_NUMERIC:      return "numerical failure";
    case PATCTL_ERR_STATE:        return "invalid state";
    case PATCTL_ERR_AUTH:         return "authentication refused";
    default:                      return "unknown error";
    }
}

#endif
