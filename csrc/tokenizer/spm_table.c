/* SentencePiece's pair table, built from the vocabulary itself (pygguf/tokenizer/spm.py).
 *
 * SentencePiece merges two adjacent symbols when their concatenation is a token, the best-scored
 * token first. So its pairs are every token split at each character boundary into a left and a
 * right part that can themselves be symbols (a token, or a single character), with the token's
 * score rank as priority; the merge loop (bpe.c) then serves it like a BPE merge list. Done in
 * Python this took a string slice and two dict lookups per boundary (1.2M boundaries, ~1.3 s on
 * Gemma 3's 262k tokens); here it is one hash of the token texts and one pass over them.
 *
 * Symbols: a token's id, or for a character that is not a token itself but is half of some pair,
 * n_tokens + k in the order first met (token by token, boundary by boundary, left half first). */
#include <stdint.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "api/bpe.h"

#define MAX_CODEPOINT 0x10FFFF

/* Bytes of the UTF-8 character starting at p (n bytes left), and its code point in *cp;
 * 0 for a malformed or truncated sequence. */
static int utf8_char(const uint8_t *p, int64_t n, uint32_t *cp) {
    if (n <= 0) return 0;
    uint8_t b = p[0];
    int len;
    uint32_t c;
    if (b < 0x80) { *cp = b; return 1; }
    else if ((b & 0xE0) == 0xC0) { len = 2; c = b & 0x1F; }
    else if ((b & 0xF0) == 0xE0) { len = 3; c = b & 0x0F; }
    else if ((b & 0xF8) == 0xF0) { len = 4; c = b & 0x07; }
    else return 0;
    if (len > n) return 0;
    for (int i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        c = (c << 6) | (p[i] & 0x3F);
    }
    if (c > MAX_CODEPOINT) return 0;
    *cp = c;
    return len;
}

/* Token texts -> ids: open addressing over ids, the texts compared in place. */
typedef struct {
    const uint8_t *texts;
    const int64_t *start;   /* (n + 1,) byte offset of each token's text */
    int32_t *slots;         /* token id, or -1 */
    uint64_t mask;
} text_index;

/* A polynomial hash, h(s) = sum s[i] * B^(n-1-i) (mod 2^64), so that with a token's prefix
 * hashes H every part of it hashes in O(1): h(s[a:b]) = H[b] - H[a] * B^(b-a). */
#define HASH_BASE 0x100000001b3ull

static uint64_t hash_bytes(const uint8_t *p, int64_t n) {
    uint64_t h = 0;
    for (int64_t i = 0; i < n; i++) h = h * HASH_BASE + p[i];
    return h;
}

static inline uint64_t slot_for(uint64_t h, uint64_t mask) {
    h ^= h >> 29;
    return (h * 0xbf58476d1ce4e5b9ull >> 17) & mask;
}

/* The id of the token with text p[0..n) (hash h), or -1; with insert >= 0, adds that id when
 * absent (a repeated text keeps its first id) and returns the id now stored. */
static int32_t index_find(text_index *ix, const uint8_t *p, int64_t n, uint64_t h, int32_t insert) {
    for (uint64_t s = slot_for(h, ix->mask);; s = (s + 1) & ix->mask) {
        int32_t id = ix->slots[s];
        if (id < 0) {
            if (insert >= 0) ix->slots[s] = insert;
            return insert;
        }
        int64_t a = ix->start[id], len = ix->start[id + 1] - a;
        if (len == n && memcmp(ix->texts + a, p, (size_t)n) == 0) return id;
    }
}

typedef struct {
    int32_t *left, *right, *priority, *result;
    int64_t n, cap;
} pair_rows;

static int rows_push(pair_rows *r, int32_t left, int32_t right, int32_t priority, int32_t result) {
    if (r->n == r->cap) {
        int64_t cap = r->cap ? 2 * r->cap : 1024;
        int32_t **cols[4] = {&r->left, &r->right, &r->priority, &r->result};
        for (int c = 0; c < 4; c++) {
            int32_t *grown = realloc(*cols[c], (size_t)cap * sizeof(int32_t));
            if (!grown) return 0;
            *cols[c] = grown;
        }
        r->cap = cap;
    }
    r->left[r->n] = left;
    r->right[r->n] = right;
    r->priority[r->n] = priority;
    r->result[r->n] = result;
    r->n++;
    return 1;
}

/* The extra symbol of the single character at p (made on first use); -1 when out of room. */
static int32_t extra_symbol(const uint8_t *p, int64_t n, int32_t n_tokens, int32_t *extra_of,
                            uint32_t *extra, int64_t max_extra, int64_t *n_extra) {
    uint32_t cp = 0;
    utf8_char(p, n, &cp);                          /* checked when the offsets were built */
    if (extra_of[cp] == 0) {
        if (*n_extra >= max_extra || *n_extra >= INT32_MAX - n_tokens) return -1;
        extra[*n_extra] = cp;
        extra_of[cp] = (int32_t)++*n_extra;
    }
    return n_tokens + extra_of[cp] - 1;
}

pg_merge_table *pg_spm_table_new(int64_t n_tokens, const uint8_t *texts, int64_t texts_size,
                                 const int32_t *n_chars, const int32_t *priority,
                                 uint32_t *extra, int64_t max_extra, int64_t *n_extra) {
    if (n_tokens < 0 || n_tokens >= INT32_MAX / 2 || texts_size < 0 || max_extra < 0 || !n_extra ||
        (n_tokens > 0 && (!texts || !n_chars || !priority)) || (max_extra > 0 && !extra)) {
        return NULL;
    }
    *n_extra = 0;
    pg_merge_table *table = NULL;
    int64_t *start = malloc((size_t)(n_tokens + 1) * sizeof *start);
    int32_t *extra_of = calloc(MAX_CODEPOINT + 1, sizeof *extra_of);   /* code point -> k + 1 */
    uint64_t cap = 16;
    while (cap < (uint64_t)n_tokens * 2) cap <<= 1;
    text_index ix = {texts, start, malloc(cap * sizeof(int32_t)), cap - 1};
    pair_rows rows = {0};
    uint64_t *prefix = NULL, *power = NULL;     /* one token's prefix hashes; HASH_BASE^j */
    if (!start || !extra_of || !ix.slots) goto done;

    /* byte offsets from the character counts, every character checked */
    int64_t pos = 0, longest = 0;
    for (int64_t i = 0; i < n_tokens; i++) {
        start[i] = pos;
        if (n_chars[i] < 0) goto done;
        for (int32_t k = 0; k < n_chars[i]; k++) {
            uint32_t cp;
            int len = utf8_char(texts + pos, texts_size - pos, &cp);
            if (!len) goto done;
            pos += len;
        }
        if (pos - start[i] > longest) longest = pos - start[i];
    }
    start[n_tokens] = pos;
    if (pos != texts_size) goto done;
    prefix = malloc((size_t)(longest + 1) * sizeof *prefix);
    power = malloc((size_t)(longest + 1) * sizeof *power);
    if (!prefix || !power) goto done;
    power[0] = 1;
    for (int64_t j = 0; j < longest; j++) power[j + 1] = power[j] * HASH_BASE;

    memset(ix.slots, 0xFF, cap * sizeof(int32_t));
    for (int64_t i = 0; i < n_tokens; i++) {
        const uint8_t *a = texts + start[i];
        int64_t size = start[i + 1] - start[i];
        index_find(&ix, a, size, hash_bytes(a, size), (int32_t)i);
    }

    for (int64_t i = 0; i < n_tokens; i++) {
        const uint8_t *a = texts + start[i];
        int64_t size = start[i + 1] - start[i], cut = 0;
        if (n_chars[i] < 2) continue;
        prefix[0] = 0;
        for (int64_t j = 0; j < size; j++) prefix[j + 1] = prefix[j] * HASH_BASE + a[j];
        if (index_find(&ix, a, size, prefix[size], -1) != i) continue;    /* a repeated text */
        for (int32_t k = 1; k < n_chars[i]; k++) {
            uint32_t cp;
            cut += utf8_char(a + cut, size - cut, &cp);
            /* a part is a symbol when it is a token or a single character */
            int32_t left = index_find(&ix, a, cut, prefix[cut], -1);
            if (left < 0 && k != 1) continue;
            int32_t right = index_find(&ix, a + cut, size - cut, prefix[size] - prefix[cut] * power[size - cut], -1);
            if (right < 0 && k != n_chars[i] - 1) continue;
            if (left < 0 && (left = extra_symbol(a, cut, (int32_t)n_tokens, extra_of, extra, max_extra, n_extra)) < 0) goto done;
            if (right < 0 && (right = extra_symbol(a + cut, size - cut, (int32_t)n_tokens, extra_of, extra, max_extra,
                                                    n_extra)) < 0) goto done;
            if (!rows_push(&rows, left, right, priority[i], (int32_t)i)) goto done;
        }
    }
    table = pg_merge_table_new(rows.n, rows.left, rows.right, rows.priority, rows.result);

done:
    free(prefix);
    free(power);
    free(start);
    free(extra_of);
    free(ix.slots);
    free(rows.left);
    free(rows.right);
    free(rows.priority);
    free(rows.result);
    return table;
}
