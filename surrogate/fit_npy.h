/* NumPy .npy files (format version 1.0), the interchange format of collected
 * data and fitted surrogates: `numpy.load(path)` reads them without patctl.
 *
 *   "\x93NUMPY" 0x01 0x00  uint16 LE header length  ASCII header  raw data
 *   header: {'descr': '<f4', 'fortran_order': False, 'shape': (S, N), }
 *           padded with spaces and a final '\n' so the data starts at a
 *           multiple of 64 bytes.
 *
 * Only little-endian, C-order float32 ('<f4'), float64 ('<f8') and int32
 * ('<i4') arrays of up to FIT_NPY_MAX_DIM dimensions. */
#ifndef PATCTL_FIT_NPY_H
#define PATCTL_FIT_NPY_H

#include <stddef.h>

#define FIT_NPY_MAX_DIM 4

typedef enum { NPY_F32 = 0, NPY_F64 = 1, NPY_I32 = 2 } npy_dtype;

/* Bytes of one element. */
size_t fit_npy_elsize(npy_dtype t);

/* Write data (ndim dims of shape[]) to path atomically (temp file + rename).
 * Returns 0, PATCTL_ERR_ARG or PATCTL_ERR_IO (message in err). */
int fit_npy_write(const char *path, npy_dtype t, int ndim, const long *shape,
                  const void *data, char *err, size_t errlen);

/* Read path, which must hold dtype `want`.  On success *data is malloc'ed
 * (caller frees), *ndim and shape[0..ndim-1] are set.  Errors name the file:
 * PATCTL_ERR_IO (cannot open/read), PATCTL_ERR_FORMAT (not an .npy this
 * reader supports, wrong dtype, truncated). */
int fit_npy_read(const char *path, npy_dtype want, int *ndim, long shape[FIT_NPY_MAX_DIM],
                 void **data, char *err, size_t errlen);

/* The same, requiring exactly `ndim` dims; expect[i] >= 0 must match. */
int fit_npy_read_shape(const char *path, npy_dtype want, int ndim, const long *expect,
                       long shape[FIT_NPY_MAX_DIM], void **data, char *err, size_t errlen);

#endif
