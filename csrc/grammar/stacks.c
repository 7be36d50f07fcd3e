/* llama.cpp's grammar stacks, hash-consed, and the memoized step "this set of stacks reads one code
 * point" (llama_grammar_accept_chr over each stack, then llama_grammar_advance_stack).
 *
 * A stack is a node id: node 0 is the empty stack, node s > 0 is the element position npos[s] on
 * top of the stack nparent[s]; equal stacks are the same id, so removing duplicates (which
 * llama.cpp does with std::find and a std::set of seen stacks) is comparing integers. A set of
 * stacks is its sorted ids, interned to a set id; set 0 is the empty set (no stack: rejected).
 *
 * Expanding a stack (llama_grammar_advance_stack): while the top is a rule reference, replace it
 * by each alternative of the rule (the element after the reference kept under it unless the
 * reference ends its alternative). One "seen" mark per node and per step stands for llama.cpp's
 * per-call std::set: a stack already expanded in this step gave its stacks already, so the union
 * is the same. The rules were checked (rules.c) so that expansion cannot grow a stack forever;
 * max_expansions and max_stacks still bound one step.
 *
 * Caches grow freely up to hard_bytes (then PG_EGRAMMAR_LIMIT); past soft_bytes they are dropped
 * whole before the next operation (match.c), which states survive by re-interning their stacks. */
#include <stdlib.h>
#include <string.h>
#include "grammar/internal.h"

enum { INIT_NODES = 1024, INIT_SETS = 256, INIT_ARENA = 4096, INIT_MEMO = 1024, INIT_SCRATCH = 256 };

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static int64_t cache_bytes(const pg_grammar *g) {
    return (int64_t)g->cap_nodes * 12 + ((int64_t)g->node_table_mask + 1) * 4
           + (int64_t)g->cap_sets * (4 + 4 + 1 + (int64_t)sizeof(uint32_t *)) + (int64_t)g->cap_arena * 4
           + ((int64_t)g->set_table_mask + 1) * 4 + (int64_t)g->n_ascii_tables * 128 * 4
           + ((int64_t)g->memo_mask + 1) * 12
           + (int64_t)(g->cap_todo + g->cap_out + g->cap_tmp + g->cap_cps) * 4;
}

static void update_bytes(pg_grammar *g) {
    g->bytes = g->fixed_bytes + cache_bytes(g);
}

/* would growing by `extra` bytes pass the hard limit? */
static int over_hard(const pg_grammar *g, int64_t extra) {
    return g->bytes + extra > g->lim.hard_bytes;
}

int grammar_reserve_u32(pg_grammar *g, uint32_t **buf, uint64_t *cap, uint64_t need) {
    if (need <= *cap) return PG_OK;
    uint64_t n = *cap ? *cap : INIT_SCRATCH;
    while (n < need) n *= 2;
    if (over_hard(g, (int64_t)(n - *cap) * 4)) return PG_EGRAMMAR_LIMIT;
    uint32_t *p = realloc(*buf, n * sizeof(uint32_t));
    if (!p) return PG_ENOMEM;
    *buf = p;
    *cap = n;
    update_bytes(g);
    return PG_OK;
}

int grammar_caches_init(pg_grammar *g) {
    g->cap_nodes = INIT_NODES;
    g->npos = malloc(INIT_NODES * sizeof(uint32_t));
    g->nparent = malloc(INIT_NODES * sizeof(uint32_t));
    g->seen = calloc(INIT_NODES, sizeof(uint32_t));
    g->node_table_mask = 2 * INIT_NODES - 1;
    g->node_table = calloc(2 * INIT_NODES, sizeof(uint32_t));
    g->cap_sets = INIT_SETS;
    g->set_off = malloc(INIT_SETS * sizeof(uint32_t));
    g->set_len = malloc(INIT_SETS * sizeof(uint32_t));
    g->set_flags = malloc(INIT_SETS);
    g->set_ascii = calloc(INIT_SETS, sizeof(uint32_t *));
    g->cap_arena = INIT_ARENA;
    g->arena = malloc(INIT_ARENA * sizeof(uint32_t));
    g->set_table_mask = 2 * INIT_SETS - 1;
    g->set_table = calloc(2 * INIT_SETS, sizeof(uint32_t));
    g->memo_mask = INIT_MEMO - 1;
    g->memo_keys = malloc(INIT_MEMO * sizeof(uint64_t));
    g->memo_vals = malloc(INIT_MEMO * sizeof(uint32_t));
    if (!g->npos || !g->nparent || !g->seen || !g->node_table || !g->set_off || !g->set_len || !g->set_flags
        || !g->set_ascii || !g->arena || !g->set_table || !g->memo_keys || !g->memo_vals)
        return PG_ENOMEM;
    memset(g->memo_keys, 0xff, INIT_MEMO * sizeof(uint64_t));
    g->memo_count = 0;
    g->n_nodes = 1;                 /* node 0: the empty stack */
    g->npos[0] = 0;
    g->nparent[0] = 0;
    g->seen_stamp = 1;
    g->n_sets = 1;                  /* set 0: the empty set */
    g->set_off[0] = 0;
    g->set_len[0] = 0;
    g->set_flags[0] = 0;
    g->n_arena = 0;
    g->n_ascii_tables = 0;
    update_bytes(g);
    return PG_OK;
}

void grammar_caches_free(pg_grammar *g) {
    if (g->set_ascii)
        for (uint32_t i = 0; i < g->n_sets; i++) free(g->set_ascii[i]);
    free(g->npos); free(g->nparent); free(g->seen); free(g->node_table);
    free(g->set_off); free(g->set_len); free(g->set_flags); free(g->set_ascii); free(g->arena); free(g->set_table);
    free(g->memo_keys); free(g->memo_vals);
    g->npos = g->nparent = g->seen = g->node_table = NULL;
    g->set_off = g->set_len = g->arena = g->set_table = NULL;
    g->set_flags = NULL;
    g->set_ascii = NULL;
    g->memo_keys = NULL;
    g->memo_vals = NULL;
    g->cap_nodes = g->cap_sets = 0;
    g->n_nodes = g->n_sets = 0;
    g->cap_arena = g->n_arena = 0;
    g->node_table_mask = g->set_table_mask = 0;
    g->memo_mask = 0;
    g->n_ascii_tables = 0;
}

void grammar_caches_flush(pg_grammar *g) {
    grammar_caches_free(g);
    for (int64_t i = 0; i < g->n_cache; i++) g->cache[i].valid = 0;
    g->gen++;
    if (grammar_caches_init(g) != PG_OK) {
        /* out of memory: leave the tables empty; every operation then fails with PG_ENOMEM */
        grammar_caches_free(g);
    }
    update_bytes(g);
}

/* ---- stack nodes -------------------------------------------------------------------------- */

static int grow_nodes(pg_grammar *g) {
    uint32_t n = g->cap_nodes * 2;
    if (n <= g->cap_nodes || n >= 0x7fffffffu) return PG_EGRAMMAR_LIMIT;
    if (over_hard(g, (int64_t)(n - g->cap_nodes) * 12)) return PG_EGRAMMAR_LIMIT;
    uint32_t *a = realloc(g->npos, (size_t)n * sizeof(uint32_t));
    if (!a) return PG_ENOMEM;
    g->npos = a;
    a = realloc(g->nparent, (size_t)n * sizeof(uint32_t));
    if (!a) return PG_ENOMEM;
    g->nparent = a;
    a = realloc(g->seen, (size_t)n * sizeof(uint32_t));
    if (!a) return PG_ENOMEM;
    memset(a + g->cap_nodes, 0, (size_t)(n - g->cap_nodes) * sizeof(uint32_t));
    g->seen = a;
    g->cap_nodes = n;
    update_bytes(g);
    return PG_OK;
}

static inline uint64_t node_hash(uint32_t pos, uint32_t parent) {
    return mix64(((uint64_t)pos << 32) | parent);
}

static int rehash_nodes(pg_grammar *g) {
    uint64_t size = ((uint64_t)g->node_table_mask + 1) * 2;
    if (over_hard(g, (int64_t)size * 4 / 2)) return PG_EGRAMMAR_LIMIT;
    uint32_t *t = calloc(size, sizeof(uint32_t));
    if (!t) return PG_ENOMEM;
    uint32_t mask = (uint32_t)(size - 1);
    for (uint32_t id = 1; id < g->n_nodes; id++) {
        uint32_t h = (uint32_t)node_hash(g->npos[id], g->nparent[id]) & mask;
        while (t[h]) h = (h + 1) & mask;
        t[h] = id;
    }
    free(g->node_table);
    g->node_table = t;
    g->node_table_mask = mask;
    update_bytes(g);
    return PG_OK;
}

int64_t grammar_intern_node(pg_grammar *g, uint32_t pos, uint32_t parent) {
    uint32_t mask = g->node_table_mask;
    uint32_t h = (uint32_t)node_hash(pos, parent) & mask;
    for (;;) {
        uint32_t id = g->node_table[h];
        if (!id) break;
        if (g->npos[id] == pos && g->nparent[id] == parent) return id;
        h = (h + 1) & mask;
    }
    if (g->n_nodes == g->cap_nodes) {
        int rc = grow_nodes(g);
        if (rc) return rc;
    }
    uint32_t id = g->n_nodes++;
    g->npos[id] = pos;
    g->nparent[id] = parent;
    g->seen[id] = 0;
    g->node_table[h] = id;
    if ((uint64_t)g->n_nodes * 2 > (uint64_t)mask + 1) {
        int rc = rehash_nodes(g);
        if (rc) return rc;
    }
    return id;
}

/* ---- sets of stacks ----------------------------------------------------------------------- */

static uint64_t set_hash(const uint32_t *ids, uint64_t n) {
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ n;
    for (uint64_t i = 0; i < n; i++) h = mix64(h ^ ids[i]) + i;
    return h;
}

static int rehash_sets(pg_grammar *g) {
    uint64_t size = ((uint64_t)g->set_table_mask + 1) * 2;
    if (over_hard(g, (int64_t)size * 4 / 2)) return PG_EGRAMMAR_LIMIT;
    uint32_t *t = calloc(size, sizeof(uint32_t));
    if (!t) return PG_ENOMEM;
    uint32_t mask = (uint32_t)(size - 1);
    for (uint32_t id = 1; id < g->n_sets; id++) {
        uint32_t h = (uint32_t)set_hash(g->arena + g->set_off[id], g->set_len[id]) & mask;
        while (t[h]) h = (h + 1) & mask;
        t[h] = id;
    }
    free(g->set_table);
    g->set_table = t;
    g->set_table_mask = mask;
    update_bytes(g);
    return PG_OK;
}

static int grow_sets(pg_grammar *g) {
    uint32_t n = g->cap_sets * 2;
    if (n <= g->cap_sets || n >= 0x7fffffffu) return PG_EGRAMMAR_LIMIT;
    if (over_hard(g, (int64_t)(n - g->cap_sets) * (9 + (int64_t)sizeof(uint32_t *)))) return PG_EGRAMMAR_LIMIT;
    uint32_t *a = realloc(g->set_off, (size_t)n * sizeof(uint32_t));
    if (!a) return PG_ENOMEM;
    g->set_off = a;
    a = realloc(g->set_len, (size_t)n * sizeof(uint32_t));
    if (!a) return PG_ENOMEM;
    g->set_len = a;
    uint8_t *f = realloc(g->set_flags, n);
    if (!f) return PG_ENOMEM;
    g->set_flags = f;
    uint32_t **t = realloc(g->set_ascii, (size_t)n * sizeof(uint32_t *));
    if (!t) return PG_ENOMEM;
    memset(t + g->cap_sets, 0, (size_t)(n - g->cap_sets) * sizeof(uint32_t *));
    g->set_ascii = t;
    g->cap_sets = n;
    update_bytes(g);
    return PG_OK;
}

static void sort_u32(uint32_t *a, uint64_t n) {
    if (n < 2) return;
    if (n <= 32) {
        for (uint64_t i = 1; i < n; i++) {
            uint32_t x = a[i];
            uint64_t j = i;
            while (j > 0 && a[j - 1] > x) { a[j] = a[j - 1]; j--; }
            a[j] = x;
        }
        return;
    }
    /* heapsort: no recursion, no extra memory */
    for (uint64_t start = n / 2; start-- > 0;) {
        uint64_t root = start;
        for (;;) {
            uint64_t c = 2 * root + 1;
            if (c >= n) break;
            if (c + 1 < n && a[c + 1] > a[c]) c++;
            if (a[root] >= a[c]) break;
            uint32_t t = a[root]; a[root] = a[c]; a[c] = t;
            root = c;
        }
    }
    for (uint64_t end = n - 1; end > 0; end--) {
        uint32_t t = a[0]; a[0] = a[end]; a[end] = t;
        uint64_t root = 0;
        for (;;) {
            uint64_t c = 2 * root + 1;
            if (c >= end) break;
            if (c + 1 < end && a[c + 1] > a[c]) c++;
            if (a[root] >= a[c]) break;
            uint32_t x = a[root]; a[root] = a[c]; a[c] = x;
            root = c;
        }
    }
}

int64_t grammar_intern_set(pg_grammar *g, uint32_t *ids, uint64_t n) {
    if (n == 0) return 0;
    sort_u32(ids, n);
    uint64_t m = 1;
    for (uint64_t i = 1; i < n; i++)
        if (ids[i] != ids[m - 1]) ids[m++] = ids[i];
    n = m;
    if (n > (uint64_t)g->lim.max_stacks) return PG_EGRAMMAR_STACKS;
    uint32_t mask = g->set_table_mask;
    uint32_t h = (uint32_t)set_hash(ids, n) & mask;
    for (;;) {
        uint32_t id = g->set_table[h];
        if (!id) break;
        if (g->set_len[id] == n && memcmp(g->arena + g->set_off[id], ids, n * sizeof(uint32_t)) == 0) return id;
        h = (h + 1) & mask;
    }
    if (g->n_arena + n > 0xffffffffULL) return PG_EGRAMMAR_LIMIT;
    if (g->n_arena + n > g->cap_arena) {
        uint64_t c = g->cap_arena;
        while (c < g->n_arena + n) c *= 2;
        if (over_hard(g, (int64_t)(c - g->cap_arena) * 4)) return PG_EGRAMMAR_LIMIT;
        uint32_t *a = realloc(g->arena, c * sizeof(uint32_t));
        if (!a) return PG_ENOMEM;
        g->arena = a;
        g->cap_arena = c;
        update_bytes(g);
    }
    if (g->n_sets == g->cap_sets) {
        int rc = grow_sets(g);
        if (rc) return rc;
    }
    uint32_t id = g->n_sets++;
    g->set_off[id] = (uint32_t)g->n_arena;
    g->set_len[id] = (uint32_t)n;
    memcpy(g->arena + g->n_arena, ids, n * sizeof(uint32_t));
    g->n_arena += n;
    uint8_t flags = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (ids[i] == 0) { flags |= SET_HAS_EMPTY; continue; }
        uint32_t t = g->el[g->npos[ids[i]]].type;
        flags |= gram_is_token(t) ? SET_HAS_TOKEN : SET_HAS_CHAR;
    }
    g->set_flags[id] = flags;
    g->set_ascii[id] = NULL;
    g->set_table[h] = id;
    if ((uint64_t)g->n_sets * 2 > (uint64_t)mask + 1) {
        int rc = rehash_sets(g);
        if (rc) return rc;
    }
    return id;
}

/* ---- expansion ---------------------------------------------------------------------------- */

void grammar_collect_begin(pg_grammar *g) {
    g->n_out = 0;
    if (++g->seen_stamp == 0) {
        memset(g->seen, 0, (size_t)g->cap_nodes * sizeof(uint32_t));
        g->seen_stamp = 1;
    }
}

/* llama_grammar_advance_stack(stack) into g->out: every stack it reaches whose top is a terminal,
 * or the empty stack; each once per collection (begin .. end). */
int grammar_collect_advance(pg_grammar *g, uint32_t stack, uint64_t *expansions) {
    uint64_t n_todo = 0;
    int rc = grammar_reserve_u32(g, &g->todo, &g->cap_todo, 1);
    if (rc) return rc;
    g->todo[n_todo++] = stack;
    while (n_todo) {
        uint32_t s = g->todo[--n_todo];
        if (g->seen[s] == g->seen_stamp) continue;
        g->seen[s] = g->seen_stamp;
        if (++*expansions > (uint64_t)g->lim.max_expansions) return PG_EGRAMMAR_STACKS;
        if (s != 0 && g->el[g->npos[s]].type == GT_RULE_REF) {
            uint32_t pos = g->npos[s];
            int64_t base = g->nparent[s];
            if (!gram_is_eos(g, pos + 1)) {
                base = grammar_intern_node(g, pos + 1, (uint32_t)base);
                if (base < 0) return (int)base;
            }
            uint32_t rule = g->el[pos].value;
            uint32_t a0 = g->alt_off[rule], a1 = g->alt_off[rule + 1];
            rc = grammar_reserve_u32(g, &g->todo, &g->cap_todo, n_todo + (a1 - a0));
            if (rc) return rc;
            for (uint32_t a = a0; a < a1; a++) {
                uint32_t first = g->alts[a];
                int64_t next = base;
                if (!gram_is_eos(g, first)) {
                    next = grammar_intern_node(g, first, (uint32_t)base);
                    if (next < 0) return (int)next;
                }
                g->todo[n_todo++] = (uint32_t)next;
            }
            continue;
        }
        /* a terminal on top, or the empty stack */
        if (g->n_out >= (uint64_t)g->lim.max_stacks) return PG_EGRAMMAR_STACKS;
        rc = grammar_reserve_u32(g, &g->out, &g->cap_out, g->n_out + 1);
        if (rc) return rc;
        g->out[g->n_out++] = s;
    }
    return PG_OK;
}

/* ---- characters --------------------------------------------------------------------------- */

/* llama_grammar_match_char(pos, cp).first on the raw elements */
static int match_char_raw(const gelem *el, uint32_t pos, uint32_t cp) {
    int found = 0;
    int positive = el[pos].type == GT_CHAR || el[pos].type == GT_CHAR_ANY;
    do {
        if (el[pos + 1].type == GT_RNG_UPPER) {
            found = found || (el[pos].value <= cp && cp <= el[pos + 1].value);
            pos += 2;
        } else if (el[pos].type == GT_CHAR_ANY) {
            found = 1;
            pos += 1;
        } else {
            found = found || el[pos].value == cp;
            pos += 1;
        }
    } while (el[pos].type == GT_CHAR_ALT);
    return found == positive;
}

void grammar_char_tables(pg_grammar *g, uint32_t pos) {
    uint64_t *bits = g->ascii + 2 * (uint64_t)pos;
    bits[0] = bits[1] = 0;
    for (uint32_t c = 0; c < 128; c++)
        if (match_char_raw(g->el, pos, c)) bits[c >> 6] |= 1ULL << (c & 63);
}

int grammar_match_char(const pg_grammar *g, uint32_t pos, uint32_t cp) {
    if (cp < 128) return (int)((g->ascii[2 * (uint64_t)pos + (cp >> 6)] >> (cp & 63)) & 1);
    return match_char_raw(g->el, pos, cp);
}

/* llama_grammar_match_partial_char: could some completion of the partial sequence match? */
int grammar_match_partial(const pg_grammar *g, uint32_t pos, uint32_t pval, int32_t nrem) {
    const gelem *el = g->el;
    int positive = el[pos].type == GT_CHAR || el[pos].type == GT_CHAR_ANY;
    if (nrem < 0 || (nrem == 1 && pval < 2)) return 0;
    uint32_t low = pval << (nrem * 6);
    uint32_t high = low | ((1u << (nrem * 6)) - 1);
    if (low == 0) {
        if (nrem == 2) low = 1u << 11;
        else if (nrem == 3) low = 1u << 16;
    }
    do {
        if (el[pos + 1].type == GT_RNG_UPPER) {
            if (el[pos].value <= high && low <= el[pos + 1].value) return positive;
            pos += 2;
        } else if (el[pos].type == GT_CHAR_ANY) {
            return 1;
        } else {
            if (low <= el[pos].value && el[pos].value <= high) return positive;
            pos += 1;
        }
    } while (el[pos].type == GT_CHAR_ALT);
    return !positive;
}

/* ---- the step ----------------------------------------------------------------------------- */

static int64_t memo_get(const pg_grammar *g, uint64_t key) {
    uint64_t h = mix64(key) & g->memo_mask;
    for (;;) {
        uint64_t k = g->memo_keys[h];
        if (k == key) return g->memo_vals[h];
        if (k == UINT64_MAX) return -1;
        h = (h + 1) & g->memo_mask;
    }
}

static int memo_put(pg_grammar *g, uint64_t key, uint32_t val) {
    if ((g->memo_count + 1) * 2 > g->memo_mask + 1) {
        uint64_t size = (g->memo_mask + 1) * 2;
        if (over_hard(g, (int64_t)size * 12 / 2)) return PG_EGRAMMAR_LIMIT;
        uint64_t *keys = malloc(size * sizeof(uint64_t));
        uint32_t *vals = malloc(size * sizeof(uint32_t));
        if (!keys || !vals) { free(keys); free(vals); return PG_ENOMEM; }
        memset(keys, 0xff, size * sizeof(uint64_t));
        for (uint64_t i = 0; i <= g->memo_mask; i++) {
            if (g->memo_keys[i] == UINT64_MAX) continue;
            uint64_t h = mix64(g->memo_keys[i]) & (size - 1);
            while (keys[h] != UINT64_MAX) h = (h + 1) & (size - 1);
            keys[h] = g->memo_keys[i];
            vals[h] = g->memo_vals[i];
        }
        free(g->memo_keys);
        free(g->memo_vals);
        g->memo_keys = keys;
        g->memo_vals = vals;
        g->memo_mask = size - 1;
        update_bytes(g);
    }
    uint64_t h = mix64(key) & g->memo_mask;
    while (g->memo_keys[h] != UINT64_MAX && g->memo_keys[h] != key) h = (h + 1) & g->memo_mask;
    if (g->memo_keys[h] == UINT64_MAX) g->memo_count++;
    g->memo_keys[h] = key;
    g->memo_vals[h] = val;
    return PG_OK;
}

/* The set after every stack of `set` reads cp (llama_grammar_accept over the set): stacks whose
 * top is a character group matching cp move past it and are expanded; empty stacks and token
 * tops drop. 0 when none is left; negative on an error. */
int64_t grammar_step(pg_grammar *g, uint32_t set, uint32_t cp) {
    if (cp < 128) {
        const uint32_t *tbl = g->set_ascii[set];
        if (tbl && tbl[cp] != NO_TRANSITION) return tbl[cp];
    } else {
        int64_t v = memo_get(g, ((uint64_t)set << 32) | cp);
        if (v >= 0) return v;
    }
    int64_t result = 0;
    if (g->set_flags[set] & SET_HAS_CHAR) {
        grammar_collect_begin(g);
        uint64_t expansions = 0;
        for (uint32_t k = 0; k < g->set_len[set]; k++) {
            uint32_t s = g->arena[g->set_off[set] + k];
            if (s == 0) continue;
            uint32_t pos = g->npos[s];
            if (!gram_is_char(g->el[pos].type) || !grammar_match_char(g, pos, cp)) continue;
            int64_t base = g->nparent[s];
            uint32_t next = g->next_item[pos];
            if (!gram_is_eos(g, next)) {
                base = grammar_intern_node(g, next, (uint32_t)base);
                if (base < 0) return base;
            }
            int rc = grammar_collect_advance(g, (uint32_t)base, &expansions);
            if (rc) return rc;
        }
        result = grammar_intern_set(g, g->out, g->n_out);
        if (result < 0) return result;
    }
    if (cp < 128) {
        if (!g->set_ascii[set]) {
            if (over_hard(g, 128 * 4)) return PG_EGRAMMAR_LIMIT;
            uint32_t *tbl = malloc(128 * sizeof(uint32_t));
            if (!tbl) return PG_ENOMEM;
            memset(tbl, 0xff, 128 * sizeof(uint32_t));
            g->set_ascii[set] = tbl;
            g->n_ascii_tables++;
            update_bytes(g);
        }
        g->set_ascii[set][cp] = (uint32_t)result;
    } else {
        int rc = memo_put(g, ((uint64_t)set << 32) | cp, (uint32_t)result);
        if (rc) return rc;
    }
    return result;
}
