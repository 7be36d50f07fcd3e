/* States, and what llama.cpp's grammar sampler does with them: which tokens are allowed
 * (llama_grammar_apply_impl with llama_grammar_reject_candidates), and accepting a token, a
 * piece or text (llama_grammar_accept_impl / _accept_token / _accept_str).
 *
 * Allowed tokens, llama.cpp's rules, token by token:
 *   - an EOG token: allowed iff some stack is empty (its piece is not looked at);
 *   - an empty piece, or one whose first byte is NUL: never;
 *   - otherwise the piece is decoded as a C string (decode_utf8, continuing the state's partial
 *     UTF-8 sequence); an invalid sequence (a stray continuation byte, or a partial sequence not
 *     continued by a continuation byte) leaves no code points and a -1 "partial": refused. The
 *     token is allowed iff some stack accepts it. A stack accepts the code points c1..cn and a
 *     partial tail: at their end (no code point left; a code point 0 also ends them), whatever
 *     it holds if there is no tail, else only if its top is a character group that some
 *     completion of the tail could match (match_partial_char); before their end, an empty stack
 *     refuses, a token element on top accepts iff it matches the token id (whatever code points
 *     are left), a character group accepts iff it matches c1 and one of the stacks it advances
 *     to accepts c2..cn and the tail.
 * The trie walk computes exactly that for every token at once: the set of stacks reached after a
 * prefix's code points is shared by every token under that prefix, a prefix no stack accepts
 * drops its whole subtree, and a token element meets a whole subtree at once (a range of the
 * trie's tokens, less those whose piece turns invalid further on). A decoded code point 0 (only
 * from an overlong encoding) ends llama.cpp's candidate early with the partial state of the
 * piece's end: that subtree is judged token by token. From a state with no partial sequence the
 * walk reads each node's decode from the trie (walk_clean); otherwise it decodes as it goes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "grammar/internal.h"

/* ---- llama.cpp's decode_utf8(std::string, partial) ---------------------------------------- */

/* The code points of piece[0..n) (already cut at its first NUL) continuing the partial sequence
 * (pval, nrem), into cps (room for n); returns how many, and the partial state after. Invalid
 * input gives 0 code points and *onrem = -1 (llama.cpp: code points {0}, partial {0, -1}). */
static int64_t decode_piece(const uint8_t *p, int64_t n, uint32_t pval, int32_t nrem, uint32_t *cps,
                            uint32_t *opval, int32_t *onrem) {
    static const int lookup[] = { 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 3, 4 };
    int64_t i = 0, k = 0;
    uint32_t value = pval;
    int32_t rem = nrem;
    while (i < n && rem > 0) {
        uint8_t b = p[i];
        if ((b >> 6) != 2) { *opval = 0; *onrem = -1; return 0; }
        value = (value << 6) + (b & 0x3F);
        i++;
        rem--;
    }
    if (nrem > 0 && rem == 0) cps[k++] = value;
    while (i < n) {
        uint8_t b = p[i];
        rem = lookup[b >> 4] - 1;
        if (rem < 0) { *opval = 0; *onrem = -1; return 0; }
        value = b & (uint8_t)((1 << (7 - rem)) - 1);
        i++;
        while (i < n && rem > 0) {
            value = (value << 6) + (p[i] & 0x3F);
            i++;
            rem--;
        }
        if (rem == 0) cps[k++] = value;
    }
    *opval = value;
    *onrem = rem;
    return k;
}

static int64_t cut_at_nul(const uint8_t *p, int64_t n) {
    const uint8_t *z = n > 0 ? memchr(p, 0, (size_t)n) : NULL;
    return z ? z - p : n;
}

/* ---- operations: lock, drop oversized caches, make the state's set current ----------------- */

static int op_begin(pg_grammar *g) {
    pthread_mutex_lock(&g->lock);
    if (g->bytes > g->lim.soft_bytes || !g->npos) {
        grammar_caches_flush(g);
        g->stats.flushes++;
        if (!g->npos) return PG_ENOMEM;
    }
    return PG_OK;
}

static void op_end(pg_grammar *g) {
    pthread_mutex_unlock(&g->lock);
}

static int ensure_set(pg_grammar_state *st) {
    pg_grammar *g = st->g;
    if (st->gen == g->gen) return PG_OK;
    int rc = grammar_reserve_u32(g, &g->tmp, &g->cap_tmp, (uint64_t)st->n_stacks + 1);
    if (rc) return rc;
    const uint32_t *p = st->pos;
    for (int64_t i = 0; i < st->n_stacks; i++) {
        int64_t id = 0;
        for (uint32_t k = 0; k < st->lens[i]; k++) {
            id = grammar_intern_node(g, *p++, (uint32_t)id);
            if (id < 0) return (int)id;
        }
        g->tmp[i] = (uint32_t)id;
    }
    int64_t set = grammar_intern_set(g, g->tmp, (uint64_t)st->n_stacks);
    if (set < 0) return (int)set;
    st->set = (uint32_t)set;
    st->gen = g->gen;
    return PG_OK;
}

/* the state takes `set` (non-empty): its own copy of the stacks, bottom to top */
static int store_set(pg_grammar_state *st, uint32_t set) {
    pg_grammar *g = st->g;
    uint32_t n = g->set_len[set];
    int64_t total = 0;
    for (uint32_t k = 0; k < n; k++)
        for (uint32_t s = g->arena[g->set_off[set] + k]; s; s = g->nparent[s]) total++;
    if (n > st->cap_stacks) {
        uint32_t *l = realloc(st->lens, (size_t)n * sizeof(uint32_t));
        if (!l) return PG_ENOMEM;
        st->lens = l;
        st->cap_stacks = n;
    }
    if (total > st->cap_pos) {
        uint32_t *p = realloc(st->pos, (size_t)total * sizeof(uint32_t));
        if (!p) return PG_ENOMEM;
        st->pos = p;
        st->cap_pos = total;
    }
    int64_t at = 0;
    for (uint32_t k = 0; k < n; k++) {
        uint32_t len = 0;
        for (uint32_t s = g->arena[g->set_off[set] + k]; s; s = g->nparent[s]) len++;
        st->lens[k] = len;
        int64_t j = at + len;
        for (uint32_t s = g->arena[g->set_off[set] + k]; s; s = g->nparent[s]) st->pos[--j] = g->npos[s];
        at += len;
    }
    st->n_stacks = n;
    st->n_pos = total;
    st->set = set;
    st->gen = g->gen;
    return PG_OK;
}

/* ---- judging one token ---------------------------------------------------------------------- */

static int partial_ok(const pg_grammar *g, uint32_t set, uint32_t pval, int32_t nrem) {
    for (uint32_t k = 0; k < g->set_len[set]; k++) {
        uint32_t s = g->arena[g->set_off[set] + k];
        if (s && gram_is_char(g->el[g->npos[s]].type) && grammar_match_partial(g, g->npos[s], pval, nrem)) return 1;
    }
    return 0;
}

static int token_top_matches(const pg_grammar *g, uint32_t set, int32_t token) {
    for (uint32_t k = 0; k < g->set_len[set]; k++) {
        uint32_t s = g->arena[g->set_off[set] + k];
        if (s && gram_is_token(g->el[g->npos[s]].type) && gram_match_token(g, g->npos[s], token)) return 1;
    }
    return 0;
}

/* llama_grammar_reject_candidates for one token (not EOG, piece non-empty, cut at NUL) */
static int eval_piece(pg_grammar *g, uint32_t set, uint32_t pval, int32_t nrem, int32_t token,
                      const uint8_t *piece, int64_t n) {
    int rc = grammar_reserve_u32(g, &g->cps, &g->cap_cps, (uint64_t)n + 1);
    if (rc) return rc;
    uint32_t opval;
    int32_t onrem;
    int64_t k = decode_piece(piece, n, pval, nrem, g->cps, &opval, &onrem);
    if (onrem < 0) return 0;
    int64_t cur = set;
    for (int64_t i = 0; i < k; i++) {
        uint32_t c = g->cps[i];
        if (c == 0) break;
        if ((g->set_flags[cur] & SET_HAS_TOKEN) && token_top_matches(g, (uint32_t)cur, token)) return 1;
        cur = grammar_step(g, (uint32_t)cur, c);
        if (cur <= 0) return (int)cur;   /* 0: refused */
    }
    if (onrem == 0) return 1;
    return partial_ok(g, (uint32_t)cur, opval, onrem);
}

static int eval_token(pg_grammar *g, uint32_t set, uint32_t pval, int32_t nrem, int32_t token) {
    const pg_token_trie *t = g->trie;
    if (t->kind[token] == TOK_EOG) return (g->set_flags[set] & SET_HAS_EMPTY) != 0;
    if (t->kind[token] == TOK_REFUSED) return 0;
    const uint8_t *piece = t->pieces + t->piece_off[token];
    return eval_piece(g, set, pval, nrem, token, piece, t->piece_off[token + 1] - t->piece_off[token]);
}

/* ---- every token: the trie walk ------------------------------------------------------------- */

static inline void set_bit(uint64_t *bits, int32_t token) {
    bits[(uint32_t)token >> 6] |= 1ULL << (token & 63);
}

/* the trie's tokens [a, b) (trie order) are allowed */
static void mark_range(pg_grammar *g, uint32_t a, uint32_t b) {
    const int32_t *tokens = g->trie->tokens;
    for (uint32_t j = a; j < b; j++) set_bit(g->w_bits, tokens[j]);
}

/* the same for those whose whole piece decodes (llama.cpp refuses a piece with an invalid byte
 * anywhere, before any stack sees it): the walk reached node i, so the bytes up to it are valid,
 * and the rest is valid iff the piece is valid from where the state's partial sequence ends */
static void mark_valid_range(pg_grammar *g, uint32_t a, uint32_t b) {
    const int32_t *tokens = g->trie->tokens;
    const uint8_t *valid = g->trie->valid_from;
    uint8_t bit = g->w_valid_bit;
    for (uint32_t j = a; j < b; j++)
        if (valid[j] & bit) set_bit(g->w_bits, tokens[j]);
}

/* token elements on top of the set's stacks meet the tokens under node i: each of them has one
 * more code point, so llama.cpp asks only match_token(top, id) */
static void mark_token_tops(pg_grammar *g, uint32_t set, uint32_t i) {
    const pg_token_trie *t = g->trie;
    uint32_t a = t->tok_begin[i], b = t->tok_begin[i + t->size[i]];
    for (uint32_t k = 0; k < g->set_len[set]; k++) {
        uint32_t s = g->arena[g->set_off[set] + k];
        if (!s) continue;
        const gelem *e = &g->el[g->npos[s]];
        if (!gram_is_token(e->type)) continue;
        int64_t j = e->value < (uint64_t)t->n_vocab ? t->dfs_index[e->value] : -1;
        int in = j >= (int64_t)a && j < (int64_t)b;
        if (e->type == GT_TOKEN) {
            if (in) mark_valid_range(g, (uint32_t)j, (uint32_t)j + 1);
        } else if (in) {
            mark_valid_range(g, a, (uint32_t)j);
            mark_valid_range(g, (uint32_t)j + 1, b);
        } else {
            mark_valid_range(g, a, b);
        }
    }
}

/* the tokens under node i, one by one (a decoded code point 0 ends llama.cpp's candidate) */
static int judge_subtree(pg_grammar *g, uint32_t i, uint32_t set0, uint32_t pval0, int32_t nrem0) {
    const pg_token_trie *t = g->trie;
    for (uint32_t j = t->tok_begin[i]; j < t->tok_begin[i + t->size[i]]; j++) {
        int r = eval_token(g, set0, pval0, nrem0, t->tokens[j]);
        if (r < 0) return r;
        if (r) set_bit(g->w_bits, t->tokens[j]);
    }
    return PG_OK;
}

/* the set after `set` reads cp: the per-set ASCII table first */
static inline int64_t step(pg_grammar *g, uint32_t set, uint32_t cp) {
    const uint32_t *tbl = cp < 128 ? g->set_ascii[set] : NULL;
    return tbl && tbl[cp] != NO_TRANSITION ? (int64_t)tbl[cp] : grammar_step(g, set, cp);
}

/* Node i completes code point cp: the set after it (> 0), or 0 when the subtree is settled here
 * (refused, or a NUL that ends llama.cpp's candidate: its tokens judged one by one), or an error */
static int64_t advance(pg_grammar *g, uint32_t set, uint32_t cp, uint32_t i, uint32_t set0, uint32_t pval0,
                       int32_t nrem0) {
    if (cp == 0) {
        const int rc = judge_subtree(g, i, set0, pval0, nrem0);
        return rc < 0 ? rc : 0;
    }
    if (g->set_flags[set] & SET_HAS_TOKEN) mark_token_tops(g, set, i);
    return step(g, set, cp);
}

/* The walk from a state with no partial UTF-8 sequence: each node's decode is the trie's
 * (dval, drem), so a node costs its set's step where it completes a code point. */
static int walk_clean(pg_grammar *g, uint32_t set0, int64_t *visited) {
    const pg_token_trie *t = g->trie;
    const uint32_t *depth = t->depth, *size = t->size, *tok_begin = t->tok_begin, *dval = t->dval;
    const uint8_t *drem = t->drem;
    uint32_t *w_set = g->w_set;
    uint32_t n_nodes = (uint32_t)t->n_nodes, i = 1;
    int64_t count = 0;
    w_set[0] = set0;
    while (i < n_nodes) {
        uint32_t d = depth[i], set = w_set[d - 1];
        uint8_t rem = drem[i];
        count++;
        if (rem == DECODE_INVALID) goto skip;
        if (rem == 0) {
            const int64_t next = advance(g, set, dval[i], i, set0, 0, 0);
            if (next <= 0) {
                if (next < 0) return (int)next;
                goto skip;
            }
            set = (uint32_t)next;
        }
        w_set[d] = set;
        if (tok_begin[i + 1] > tok_begin[i] && (rem == 0 || partial_ok(g, set, dval[i], rem)))
            mark_range(g, tok_begin[i], tok_begin[i + 1]);
        i++;
        continue;
    skip:
        i += size[i];
    }
    *visited = count;
    return PG_OK;
}

/* The walk from a partial sequence (pval0, nrem0 > 0): the first nrem0 bytes must continue it. */
static int walk_partial(pg_grammar *g, uint32_t set0, uint32_t pval0, int32_t nrem0, int64_t *visited) {
    static const int lookup[] = { 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 3, 4 };
    const pg_token_trie *t = g->trie;
    const uint8_t *byte = t->byte;
    const uint32_t *depth = t->depth, *size = t->size, *tok_begin = t->tok_begin;
    uint32_t *w_set = g->w_set, *w_val = g->w_val;
    int32_t *w_rem = g->w_rem;
    uint8_t *w_cont = g->w_cont;
    uint32_t n_nodes = (uint32_t)t->n_nodes, i = 1;
    int64_t count = 0;
    w_set[0] = set0;
    w_val[0] = pval0;
    w_rem[0] = nrem0;
    w_cont[0] = 1;
    while (i < n_nodes) {
        uint32_t d = depth[i], p = d - 1;
        uint8_t b = byte[i];
        uint32_t set = w_set[p], val = w_val[p];
        int32_t rem = w_rem[p];
        uint8_t cont = w_cont[p];
        int emit = 0;
        count++;
        if (cont) {                     /* continuing the state's partial sequence */
            if ((b >> 6) != 2) goto skip;
            val = (val << 6) + (b & 0x3F);
            if (--rem == 0) { emit = 1; cont = 0; }
        } else if (rem == 0) {          /* a lead byte */
            int r = lookup[b >> 4] - 1;
            if (r < 0) goto skip;
            val = b & (uint32_t)((1 << (7 - r)) - 1);
            rem = r;
            emit = r == 0;
        } else {                        /* inside a sequence begun in this piece: not checked */
            val = (val << 6) + (b & 0x3F);
            emit = --rem == 0;
        }
        if (emit) {
            const int64_t next = advance(g, set, val, i, set0, pval0, nrem0);
            if (next <= 0) {
                if (next < 0) return (int)next;
                goto skip;
            }
            set = (uint32_t)next;
        }
        w_set[d] = set;
        w_val[d] = val;
        w_rem[d] = rem;
        w_cont[d] = cont;
        if (tok_begin[i + 1] > tok_begin[i] && (rem == 0 || partial_ok(g, set, val, rem)))
            mark_range(g, tok_begin[i], tok_begin[i + 1]);
        i++;
        continue;
    skip:
        i += size[i];
    }
    *visited = count;
    return PG_OK;
}

static int walk(pg_grammar *g, uint32_t set0, uint32_t pval0, int32_t nrem0, mask_entry *e) {
    const pg_token_trie *t = g->trie;
    int64_t words = (t->n_vocab + 63) / 64, visited = 0;
    g->w_bits = e->bits;
    memset(e->bits, 0, (size_t)words * sizeof(uint64_t));
    g->w_valid_bit = (uint8_t)(1u << (nrem0 > 0 ? nrem0 : 0));
    int rc = nrem0 > 0 ? walk_partial(g, set0, pval0, nrem0, &visited) : walk_clean(g, set0, &visited);
    if (rc) return rc;
    g->stats.walks++;
    g->stats.walk_nodes += visited;
    int64_t n_allowed = 0;
    for (int64_t w = 0; w < words; w++) n_allowed += __builtin_popcountll(e->bits[w]);
    e->n_not_eog = n_allowed;
    if (g->set_flags[set0] & SET_HAS_EMPTY) {
        for (int64_t k = 0; k < t->n_eog; k++) set_bit(e->bits, t->eog_ids[k]);
        n_allowed += t->n_eog;
    }
    e->n_allowed = n_allowed;
    return PG_OK;
}

/* llama.cpp treats a partial state of -1 (left by accepting an invalid piece) like none */
static void cache_key(const pg_grammar_state *st, uint32_t *pval, int32_t *nrem) {
    *pval = st->nrem > 0 ? st->pval : 0;
    *nrem = st->nrem > 0 ? st->nrem : 0;
}

static mask_entry *find_cached(pg_grammar *g, const pg_grammar_state *st) {
    uint32_t pval;
    int32_t nrem;
    cache_key(st, &pval, &nrem);
    for (int64_t i = 0; i < g->n_cache; i++) {
        mask_entry *e = &g->cache[i];
        if (e->valid && e->set == st->set && e->pval == pval && e->nrem == nrem) {
            e->tick = ++g->tick;
            return e;
        }
    }
    return NULL;
}

/* the state's allowed set, from the cache or walked into the least recently used entry */
static int allowed_entry(pg_grammar_state *st, mask_entry **out) {
    pg_grammar *g = st->g;
    mask_entry *e = find_cached(g, st);
    if (e) {
        g->stats.mask_hits++;
        *out = e;
        return PG_OK;
    }
    e = &g->cache[0];
    for (int64_t i = 1; i < g->n_cache && e->valid; i++)
        if (!g->cache[i].valid || g->cache[i].tick < e->tick) e = &g->cache[i];
    e->valid = 0;
    uint32_t pval;
    int32_t nrem;
    cache_key(st, &pval, &nrem);
    int rc = walk(g, st->set, pval, nrem, e);
    if (rc) return rc;
    e->set = st->set;
    e->pval = pval;
    e->nrem = nrem;
    e->valid = 1;
    e->tick = ++g->tick;
    *out = e;
    return PG_OK;
}

/* ---- the start ------------------------------------------------------------------------------ */

/* the root's alternatives, each expanded (llama_grammar_init_impl); 0 = no stack */
int grammar_start_set(pg_grammar *g, int64_t *set) {
    grammar_collect_begin(g);
    uint64_t expansions = 0;
    for (uint32_t a = g->alt_off[g->root]; a < g->alt_off[g->root + 1]; a++) {
        uint32_t first = g->alts[a];
        int64_t s = 0;
        if (!gram_is_eos(g, first)) {
            s = grammar_intern_node(g, first, 0);
            if (s < 0) return (int)s;
        }
        int rc = grammar_collect_advance(g, (uint32_t)s, &expansions);
        if (rc) return rc;
    }
    *set = grammar_intern_set(g, g->out, g->n_out);
    return *set < 0 ? (int)*set : PG_OK;
}

int pg_grammar_state_new(pg_grammar *g, pg_grammar_state **out) {
    if (!g || !out) return PG_EBADARG;
    *out = NULL;
    pg_grammar_state *st = calloc(1, sizeof *st);
    if (!st) return PG_ENOMEM;
    st->g = g;
    int rc = op_begin(g);
    int64_t set = 0;
    if (!rc) rc = grammar_start_set(g, &set);
    if (!rc && set == 0) rc = PG_EGRAMMAR_EMPTY;
    if (!rc) rc = store_set(st, (uint32_t)set);
    op_end(g);
    if (rc) {
        pg_grammar_state_free(st);
        return rc;
    }
    *out = st;
    return PG_OK;
}

void pg_grammar_state_free(pg_grammar_state *st) {
    if (!st) return;
    free(st->lens);
    free(st->pos);
    free(st);
}

int pg_grammar_state_copy(const pg_grammar_state *src, pg_grammar_state **out) {
    if (!src || !out) return PG_EBADARG;
    *out = NULL;
    pg_grammar_state *st = calloc(1, sizeof *st);
    if (!st) return PG_ENOMEM;
    *st = *src;
    st->lens = malloc(((size_t)src->n_stacks + 1) * sizeof(uint32_t));
    st->pos = malloc(((size_t)src->n_pos + 1) * sizeof(uint32_t));
    if (!st->lens || !st->pos) {
        pg_grammar_state_free(st);
        return PG_ENOMEM;
    }
    if (src->n_stacks) memcpy(st->lens, src->lens, (size_t)src->n_stacks * sizeof(uint32_t));
    if (src->n_pos) memcpy(st->pos, src->pos, (size_t)src->n_pos * sizeof(uint32_t));
    st->cap_stacks = src->n_stacks + 1;
    st->cap_pos = src->n_pos + 1;
    *out = st;
    return PG_OK;
}

void pg_grammar_state_get_info(const pg_grammar_state *st, pg_grammar_state_info *info) {
    info->n_stacks = st->n_stacks;
    info->n_positions = st->n_pos;
    info->can_end = 0;
    for (int64_t i = 0; i < st->n_stacks; i++)
        if (st->lens[i] == 0) info->can_end = 1;
    info->partial_value = st->pval;
    info->partial_remain = st->nrem;
}

int64_t pg_grammar_state_stacks(const pg_grammar_state *st, uint32_t *positions, int64_t max_positions,
                                uint32_t *lengths, int64_t max_stacks) {
    if (st->n_stacks > max_stacks || st->n_pos > max_positions) return PG_EBADSIZE;
    if ((st->n_stacks && !lengths) || (st->n_pos && !positions)) return PG_EBADARG;
    if (st->n_stacks) memcpy(lengths, st->lens, (size_t)st->n_stacks * sizeof(uint32_t));
    if (st->n_pos) memcpy(positions, st->pos, (size_t)st->n_pos * sizeof(uint32_t));
    return st->n_stacks;
}

/* ---- allowed tokens ------------------------------------------------------------------------- */

int pg_grammar_allows(pg_grammar_state *st, int32_t token) {
    if (!st || token < 0 || token >= st->g->trie->n_vocab) return PG_EBADARG;
    pg_grammar *g = st->g;
    int rc = op_begin(g);
    if (!rc) rc = ensure_set(st);
    if (!rc) {
        mask_entry *e = find_cached(g, st);
        if (e) {
            rc = (int)((e->bits[(uint32_t)token >> 6] >> (token & 63)) & 1);
        } else {
            uint32_t pval;
            int32_t nrem;
            cache_key(st, &pval, &nrem);
            rc = eval_token(g, st->set, pval, nrem, token);
        }
    }
    op_end(g);
    return rc;
}

int64_t pg_grammar_allowed(pg_grammar_state *st, uint8_t *out, int64_t n, int64_t *n_not_eog) {
    if (!st || (out && n != st->g->trie->n_vocab)) return PG_EBADARG;
    pg_grammar *g = st->g;
    mask_entry *e = NULL;
    int64_t rc = op_begin(g);
    if (!rc) rc = ensure_set(st);
    if (!rc) rc = allowed_entry(st, &e);
    if (!rc) {
        if (out)
            for (int64_t t = 0; t < n; t++) out[t] = (uint8_t)((e->bits[t >> 6] >> (t & 63)) & 1);
        if (n_not_eog) *n_not_eog = e->n_not_eog;
        rc = e->n_allowed;
    }
    op_end(g);
    return rc;
}

int64_t pg_grammar_mask(pg_grammar_state *st, float *logits, int64_t n, int64_t *n_not_eog) {
    if (!st || !logits || n != st->g->trie->n_vocab) return PG_EBADARG;
    pg_grammar *g = st->g;
    mask_entry *e = NULL;
    int64_t rc = op_begin(g);
    if (!rc) rc = ensure_set(st);
    if (!rc) rc = allowed_entry(st, &e);
    if (!rc) {
        int64_t words = (n + 63) / 64;
        for (int64_t w = 0; w < words; w++) {
            uint64_t bits = e->bits[w];
            int64_t base = w * 64, end = base + 64 < n ? base + 64 : n;
            if (bits == 0) {
                for (int64_t t = base; t < end; t++) logits[t] = -INFINITY;
            } else if (bits != ~0ULL || end - base != 64) {
                for (int64_t t = base; t < end; t++)
                    if (!((bits >> (t - base)) & 1)) logits[t] = -INFINITY;
            }
        }
        if (n_not_eog) *n_not_eog = e->n_not_eog;
        rc = e->n_allowed;
    }
    op_end(g);
    return rc;
}

/* ---- accepting ------------------------------------------------------------------------------ */

/* llama_grammar_accept_token(token, piece) */
static int accept_piece_locked(pg_grammar_state *st, int32_t token, const uint8_t *piece, int64_t n) {
    pg_grammar *g = st->g;
    n = cut_at_nul(piece, n);
    int rc = grammar_reserve_u32(g, &g->cps, &g->cap_cps, (uint64_t)n + 1);
    if (rc) return rc;
    uint32_t opval;
    int32_t onrem;
    int64_t k = decode_piece(piece, n, st->pval, st->nrem, g->cps, &opval, &onrem);
    uint32_t set = st->set;
    uint32_t len = g->set_len[set];

    /* token elements on top: match the id, then step past the element */
    grammar_collect_begin(g);
    uint64_t expansions = 0;
    if (g->set_flags[set] & SET_HAS_TOKEN) {
        for (uint32_t j = 0; j < len; j++) {
            uint32_t s = g->arena[g->set_off[set] + j];
            if (!s || !gram_is_token(g->el[g->npos[s]].type) || !gram_match_token(g, g->npos[s], token)) continue;
            int64_t base = g->nparent[s];
            if (!gram_is_eos(g, g->npos[s] + 1)) {
                base = grammar_intern_node(g, g->npos[s] + 1, (uint32_t)base);
                if (base < 0) return (int)base;
            }
            rc = grammar_collect_advance(g, (uint32_t)base, &expansions);
            if (rc) return rc;
        }
    }
    uint64_t n_tok = g->n_out;
    rc = grammar_reserve_u32(g, &g->tmp, &g->cap_tmp, n_tok + len + 1);
    if (rc) return rc;
    memcpy(g->tmp, g->out, n_tok * sizeof(uint32_t));

    /* character groups on top: read every code point (0 included) */
    uint64_t n_chr = 0;
    rc = grammar_reserve_u32(g, &g->out, &g->cap_out, len + 1);
    if (rc) return rc;
    for (uint32_t j = 0; j < len; j++) {
        uint32_t s = g->arena[g->set_off[set] + j];
        if (s && gram_is_char(g->el[g->npos[s]].type)) g->out[n_chr++] = s;
    }
    int64_t cur = grammar_intern_set(g, g->out, n_chr);
    for (int64_t i = 0; i < k && cur > 0; i++) cur = grammar_step(g, (uint32_t)cur, g->cps[i]);
    if (cur < 0) return (int)cur;

    uint32_t m = g->set_len[cur];
    rc = grammar_reserve_u32(g, &g->tmp, &g->cap_tmp, n_tok + m + 1);
    if (rc) return rc;
    memcpy(g->tmp + n_tok, g->arena + g->set_off[cur], (size_t)m * sizeof(uint32_t));
    int64_t result = grammar_intern_set(g, g->tmp, n_tok + m);
    if (result < 0) return (int)result;
    if (result == 0) return PG_EGRAMMAR_REJECTED;
    rc = store_set(st, (uint32_t)result);
    if (rc) return rc;
    st->pval = opval;
    st->nrem = onrem;
    return PG_OK;
}

int pg_grammar_accept_piece(pg_grammar_state *st, int32_t token, const uint8_t *piece, int64_t n) {
    if (!st || n < 0 || (n > 0 && !piece)) return PG_EBADARG;
    pg_grammar *g = st->g;
    int rc = op_begin(g);
    if (!rc) rc = ensure_set(st);
    if (!rc) rc = accept_piece_locked(st, token, piece, n);
    op_end(g);
    return rc;
}

int pg_grammar_accept(pg_grammar_state *st, int32_t token) {
    if (!st || token < 0 || token >= st->g->trie->n_vocab) return PG_EBADARG;
    pg_grammar *g = st->g;
    const pg_token_trie *t = g->trie;
    int rc = op_begin(g);
    if (!rc) rc = ensure_set(st);
    if (!rc) {
        if (t->kind[token] == TOK_EOG)
            rc = g->set_flags[st->set] & SET_HAS_EMPTY ? PG_OK : PG_EGRAMMAR_REJECTED;
        else
            rc = accept_piece_locked(st, token, t->pieces + t->piece_off[token],
                                     t->piece_off[token + 1] - t->piece_off[token]);
    }
    op_end(g);
    return rc;
}

int pg_grammar_accept_text(pg_grammar_state *st, const uint8_t *text, int64_t n) {
    if (!st || n < 0 || (n > 0 && !text)) return PG_EBADARG;
    pg_grammar *g = st->g;
    int rc = op_begin(g);
    if (!rc) rc = ensure_set(st);
    if (!rc) {
        n = cut_at_nul(text, n);
        rc = grammar_reserve_u32(g, &g->cps, &g->cap_cps, (uint64_t)n + 1);
    }
    if (!rc) {
        uint32_t opval;
        int32_t onrem;
        int64_t k = decode_piece(text, n, st->pval, st->nrem, g->cps, &opval, &onrem);
        int64_t cur = st->set;
        for (int64_t i = 0; i < k && cur > 0; i++) cur = grammar_step(g, (uint32_t)cur, g->cps[i]);
        if (cur < 0) rc = (int)cur;
        else if (cur == 0) rc = PG_EGRAMMAR_REJECTED;
        else if (k > 0) rc = store_set(st, (uint32_t)cur);
        if (!rc) {
            st->pval = opval;
            st->nrem = onrem;
        }
    }
    op_end(g);
    return rc;
}
