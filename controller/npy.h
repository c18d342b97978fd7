/* NumPy .npy files, format version 1.0 (2.0 when the header is longer than
 * 65535 bytes), written without NumPy:
 *
 *   "\x93NUMPY" major minor  HEADER_LEN (uint16 LE; uint32 LE in 2.0)
 *   "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }" + blanks + "\n"
 *   raw data, C order
 *
 * with the magic, lengths and header padded to a multiple of 64 bytes.
 * descr is a NumPy type string ('<f4', '<i8', '|S12') or a structured type
 * ("[('step', '<i8'), ('loss', '<f8')]").  numpy.load() reads the result. */
#ifndef PATCTL_NPY_H
#define PATCTL_NPY_H

#include <stdio.h>

/* Write the header of an array of shape[ndim] (ndim 0..8); the caller then
 * writes prod(shape) items of descr.  0 or PATCTL_ERR_IO / _ARG. */
int npy_write_header(FILE *f, const char *descr, int ndim, const long *shape);

/* A whole float32 array [rows, cols] (cols == 0: 1-D [rows]) to path. */
int npy_save_f32(const char *path, const float *v, long rows, long cols);
/* A whole int32 array [rows, cols] to path. */
int npy_save_i32(const char *path, const int *v, long rows, long cols);

#endif
