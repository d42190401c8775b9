/* Ungrouping of byte planes (docs/formats.md): element i's byte k is plane k's byte i. Shared by _bytegroup.c
 * (git_theta.bytegroup) and _densecodec.c (the checkout's compiled decode), each its own extension module. */
#ifndef GIT_THETA_BYTEGROUP_H
#define GIT_THETA_BYTEGROUP_H

#include <Python.h>

/* A loop over elements with a fixed itemsize: the compiler turns it into vector shuffles (10-20 GB/s). */
#define UNGROUP_FIXED(N)                                                   \
    for (Py_ssize_t i = 0; i < count; i++)                                 \
        for (Py_ssize_t k = 0; k < (N); k++)                               \
            elements[i * (N) + k] = planes[k * count + i];

/* elements[i * itemsize + k] = planes[k * count + i] */
static void ungroup_bytes(const unsigned char *planes, unsigned char *elements, Py_ssize_t count, Py_ssize_t itemsize)
{
    switch (itemsize) {
    case 2: UNGROUP_FIXED(2) break;
    case 4: UNGROUP_FIXED(4) break;
    case 8: UNGROUP_FIXED(8) break;
    default:
        for (Py_ssize_t k = 0; k < itemsize; k++) {
            const unsigned char *plane = planes + k * count;
            unsigned char *target = elements + k;
            for (Py_ssize_t i = 0; i < count; i++)
                target[i * itemsize] = plane[i];
        }
    }
}

#endif
