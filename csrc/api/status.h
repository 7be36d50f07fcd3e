/* Status codes of every C entry point (cdef'd by cffi: Python reads them from lib). 0 is
 * success; a negative code says what was refused. */
#ifndef PYGGUF_API_STATUS_H
#define PYGGUF_API_STATUS_H

enum { PG_OK = 0, PG_EBADTYPE = -1, PG_EBADSIZE = -2, PG_ENOKERNEL = -3, PG_EBADISA = -4, PG_ENOMEM = -5, PG_EBADARG = -6,
       PG_EBUSY = -7 };   /* a model or thread pool already in use by another thread */

#endif
