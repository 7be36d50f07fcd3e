/* The thread pool (cdef'd by cffi): persistent C threads, the calling thread as worker 0, made
 * once per model (llama.cpp's -t). */
#ifndef PYGGUF_API_POOL_H
#define PYGGUF_API_POOL_H

typedef struct pg_pool pg_pool;
pg_pool *pg_pool_new(int n_threads);
void pg_pool_free(pg_pool *pool);

#endif
