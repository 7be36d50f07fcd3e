/* The vocabulary's pieces as a byte trie in preorder (see internal.h), built once per vocabulary:
 * the tokens sorted by piece (bytewise, a prefix first), then one node per new byte of each piece
 * past its common prefix with the one before. */
#include <stdlib.h>
#include <string.h>
#include "grammar/internal.h"

/* decoding p[k..n) from a character boundary as llama.cpp's decode_utf8 does (continuation bytes
 * inside a sequence are not checked), no lead byte is a continuation byte */
static int valid_from(const uint8_t *p, int64_t n, int64_t k) {
    static const int len[] = { 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 3, 4 };
    while (k < n) {
        int l = len[p[k] >> 4];
        if (l == 0) return 0;
        k += l;
    }
    return 1;
}

typedef struct {
    const uint8_t *data;
    const int64_t *off;
    const int64_t *len;
} piece_view;

static int piece_cmp(const piece_view *v, int32_t a, int32_t b) {
    int64_t la = v->len[a], lb = v->len[b];
    int c = memcmp(v->data + v->off[a], v->data + v->off[b], (size_t)(la < lb ? la : lb));
    if (c != 0) return c;
    if (la != lb) return la < lb ? -1 : 1;
    return a < b ? -1 : (a > b);
}

/* bottom-up merge sort of ids by piece (stable, no recursion, no global comparator state) */
static void sort_by_piece(const piece_view *v, int32_t *ids, int32_t *tmp, int64_t n) {
    for (int64_t width = 1; width < n; width *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * width) {
            int64_t mid = lo + width < n ? lo + width : n;
            int64_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            int64_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) tmp[k++] = piece_cmp(v, ids[i], ids[j]) <= 0 ? ids[i++] : ids[j++];
            while (i < mid) tmp[k++] = ids[i++];
            while (j < hi) tmp[k++] = ids[j++];
        }
        memcpy(ids, tmp, (size_t)n * sizeof *ids);
    }
}

void pg_token_trie_free(pg_token_trie *t) {
    if (!t) return;
    free(t->byte); free(t->dval); free(t->drem); free(t->depth); free(t->size); free(t->tok_begin); free(t->tokens); free(t->valid_from);
    free(t->dfs_index); free(t->kind); free(t->eog_ids); free(t->pieces); free(t->piece_off);
    free(t);
}

int pg_token_trie_new(const uint8_t *data, const int64_t *offsets, int64_t n_vocab,
                      const int32_t *eog_ids, int64_t n_eog, pg_token_trie **out) {
    if (!out) return PG_EBADARG;
    *out = NULL;
    if (n_vocab < 0 || n_vocab >= INT32_MAX || n_eog < 0 || !offsets || !data || (n_eog > 0 && !eog_ids))
        return PG_EBADARG;
    if (offsets[0] != 0) return PG_EBADARG;
    for (int64_t i = 0; i < n_vocab; i++)
        if (offsets[i + 1] < offsets[i]) return PG_EBADARG;
    for (int64_t i = 0; i < n_eog; i++)
        if (eog_ids[i] < 0 || eog_ids[i] >= n_vocab) return PG_EBADARG;
    int64_t total = offsets[n_vocab];
    if (total >= (int64_t)UINT32_MAX) return PG_EBADSIZE;   /* node ids are 32-bit */

    pg_token_trie *t = calloc(1, sizeof *t);
    if (!t) return PG_ENOMEM;
    t->n_vocab = n_vocab;
    t->kind = calloc((size_t)n_vocab + 1, 1);
    t->dfs_index = malloc(((size_t)n_vocab + 1) * sizeof(int32_t));
    t->eog_ids = malloc(((size_t)n_eog + 1) * sizeof(int32_t));
    t->piece_off = malloc(((size_t)n_vocab + 1) * sizeof(int64_t));
    int64_t *len = malloc(((size_t)n_vocab + 1) * sizeof(int64_t));
    int32_t *ids = malloc(((size_t)n_vocab + 1) * sizeof(int32_t));
    int32_t *tmp = malloc(((size_t)n_vocab + 1) * sizeof(int32_t));
    if (!t->kind || !t->dfs_index || !t->eog_ids || !t->piece_off || !len || !ids || !tmp) goto nomem;

    /* pieces up to the first NUL (llama.cpp reads them as C strings) */
    int64_t kept = 0;
    for (int64_t i = 0; i < n_vocab; i++) {
        const uint8_t *p = data + offsets[i];
        const uint8_t *nul = memchr(p, 0, (size_t)(offsets[i + 1] - offsets[i]));
        len[i] = nul ? nul - p : offsets[i + 1] - offsets[i];
        kept += len[i];
    }
    t->pieces = malloc((size_t)kept + 1);
    if (!t->pieces) goto nomem;
    kept = 0;
    for (int64_t i = 0; i < n_vocab; i++) {
        t->piece_off[i] = kept;
        memcpy(t->pieces + kept, data + offsets[i], (size_t)len[i]);
        kept += len[i];
    }
    t->piece_off[n_vocab] = kept;

    for (int64_t i = 0; i < n_eog; i++) t->kind[eog_ids[i]] = TOK_EOG;
    int64_t n_eog_unique = 0;
    for (int64_t i = 0; i < n_vocab; i++)
        if (t->kind[i] == TOK_EOG) t->eog_ids[n_eog_unique++] = (int32_t)i;
    t->n_eog = n_eog_unique;

    int64_t n_tokens = 0, max_len = 0;
    for (int64_t i = 0; i < n_vocab; i++) {
        t->dfs_index[i] = -1;
        if (t->kind[i] == TOK_EOG || len[i] == 0) continue;   /* empty, or NUL first: refused */
        t->kind[i] = TOK_TRIE;
        ids[n_tokens++] = (int32_t)i;
        if (len[i] > max_len) max_len = len[i];
    }
    piece_view v = { t->pieces, t->piece_off, len };
    sort_by_piece(&v, ids, tmp, n_tokens);

    /* count the nodes: one per byte past the common prefix with the previous piece */
    int64_t n_nodes = 1;
    for (int64_t k = 0; k < n_tokens; k++) {
        int64_t l = 0;
        if (k > 0) {
            const uint8_t *a = t->pieces + t->piece_off[ids[k - 1]], *b = t->pieces + t->piece_off[ids[k]];
            int64_t m = len[ids[k - 1]] < len[ids[k]] ? len[ids[k - 1]] : len[ids[k]];
            while (l < m && a[l] == b[l]) l++;
        }
        n_nodes += len[ids[k]] - l;
    }
    if (n_nodes >= (int64_t)UINT32_MAX) goto nomem;
    t->n_nodes = n_nodes;
    t->n_tokens = n_tokens;
    t->max_depth = (uint32_t)max_len;
    t->byte = calloc((size_t)n_nodes, 1);
    t->dval = calloc((size_t)n_nodes, sizeof(uint32_t));
    t->drem = calloc((size_t)n_nodes, 1);
    t->depth = calloc((size_t)n_nodes, sizeof(uint32_t));
    t->size = malloc((size_t)n_nodes * sizeof(uint32_t));
    t->tok_begin = calloc((size_t)n_nodes + 1, sizeof(uint32_t));
    t->tokens = malloc(((size_t)n_tokens + 1) * sizeof(int32_t));
    t->valid_from = malloc((size_t)n_tokens + 1);
    uint32_t *parent = malloc((size_t)n_nodes * sizeof(uint32_t));
    uint32_t *path = malloc(((size_t)max_len + 1) * sizeof(uint32_t));
    uint32_t *node_of = malloc(((size_t)n_tokens + 1) * sizeof(uint32_t));
    if (!t->byte || !t->dval || !t->drem || !t->depth || !t->size || !t->tok_begin || !t->tokens || !t->valid_from || !parent || !path
        || !node_of) {
        free(parent); free(path); free(node_of);
        goto nomem;
    }
    uint32_t next = 1;
    path[0] = 0;
    parent[0] = 0;
    for (int64_t k = 0; k < n_tokens; k++) {
        const uint8_t *b = t->pieces + t->piece_off[ids[k]];
        int64_t l = 0;
        if (k > 0) {
            const uint8_t *a = t->pieces + t->piece_off[ids[k - 1]];
            int64_t m = len[ids[k - 1]] < len[ids[k]] ? len[ids[k - 1]] : len[ids[k]];
            while (l < m && a[l] == b[l]) l++;
        }
        for (int64_t d = l + 1; d <= len[ids[k]]; d++) {
            t->byte[next] = b[d - 1];
            t->depth[next] = (uint32_t)d;
            parent[next] = path[d - 1];
            path[d] = next++;
        }
        node_of[k] = path[len[ids[k]]];
        t->tokens[k] = ids[k];
        t->dfs_index[ids[k]] = (int32_t)k;
        t->valid_from[k] = 0;
        for (int64_t off = 0; off < 4; off++)
            t->valid_from[k] |= (uint8_t)(valid_from(b, len[ids[k]], off) << off);
    }
    /* each node's decode from no partial state, from its parent's (preorder: parents first) */
    static const int seq_len[] = { 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 3, 4 };
    for (int64_t i = 1; i < n_nodes; i++) {
        uint8_t b = t->byte[i], prem = t->drem[parent[i]];
        if (prem == DECODE_INVALID) {
            t->drem[i] = DECODE_INVALID;
        } else if (prem == 0) {          /* a lead byte */
            int r = seq_len[b >> 4] - 1;
            t->drem[i] = r < 0 ? DECODE_INVALID : (uint8_t)r;
            t->dval[i] = r < 0 ? 0 : b & (uint32_t)((1 << (7 - r)) - 1);
        } else {                         /* inside a sequence: not checked, as llama.cpp */
            t->drem[i] = (uint8_t)(prem - 1);
            t->dval[i] = (t->dval[parent[i]] << 6) + (b & 0x3F);
        }
    }
    for (int64_t i = 0; i < n_nodes; i++) t->size[i] = 1;
    for (int64_t i = n_nodes - 1; i > 0; i--) t->size[parent[i]] += t->size[i];
    /* tok_begin[i] = tokens ending at nodes before i (tokens are in node preorder) */
    for (int64_t k = 0; k < n_tokens; k++) t->tok_begin[node_of[k] + 1]++;
    for (int64_t i = 0; i < n_nodes; i++) t->tok_begin[i + 1] += t->tok_begin[i];
    free(parent); free(path); free(node_of);
    free(len); free(ids); free(tmp);

    t->bytes = (int64_t)sizeof *t + n_nodes * (1 + 4 + 1 + 4 + 4 + 4) + 4 + n_tokens * 5 + n_vocab * (4 + 1 + 8) + 8
               + n_eog * 4 + kept;
    *out = t;
    return PG_OK;
nomem:
    free(len); free(ids); free(tmp);
    pg_token_trie_free(t);
    return PG_ENOMEM;
}

void pg_token_trie_get_info(const pg_token_trie *t, pg_token_trie_info *info) {
    info->n_vocab = t->n_vocab;
    info->n_nodes = t->n_nodes;
    info->n_tokens = t->n_tokens;
    info->max_depth = t->max_depth;
    info->bytes = t->bytes;
}
