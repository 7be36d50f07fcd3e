/* The benchmarks' measuring stick (api/machine.h): the machine's streaming-read bandwidth, what
 * a memory-bound matrix x vector could reach at best. */
#include <stdint.h>
#include <stddef.h>
#include "core/threadpool.h"
#include "api/machine.h"

typedef struct { const uint64_t *words; int64_t nwords; uint64_t sums[64]; } read_task;

/* buf (nwords,) -> xor of words; 8 independent lanes so loads, not the xor chain, set the pace */
static void read_share(void *arg, int ith, int nth) {
    read_task *rt = arg;
    int64_t w0, w1;
    pg_split(rt->nwords, 64, ith, nth, &w0, &w1);   /* 512-byte aligned shares */
    uint64_t acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t i = w0; i + 8 <= w1; i += 8)
        for (int k = 0; k < 8; k++) acc[k] ^= rt->words[i + k];
    uint64_t s = 0;
    for (int k = 0; k < 8; k++) s ^= acc[k];
    if (ith < 64) rt->sums[ith] = s;
}

uint64_t pg_stream_read(pg_pool *pool, const void *buf, size_t bytes) {
    if (!pool || !buf) return 0;
    read_task rt = {buf, (int64_t)(bytes / 8), {0}};
    if (pg_pool_run(pool, read_share, &rt) != PG_OK) return 0;   /* in use by another thread */
    uint64_t s = 0;
    for (int i = 0; i < 64; i++) s ^= rt.sums[i];
    return s;
}
