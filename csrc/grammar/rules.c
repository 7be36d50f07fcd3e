/* Loading a grammar: the rules checked (nothing after this trusts an index), the character groups
 * precomputed, and the check that expansion terminates.
 *
 * Shape: each rule ends with its only END; its alternatives, separated by ALT, are runs of items:
 * RULE_REF (to an existing rule), TOKEN, TOKEN_NOT, or a character group: CHAR, CHAR_NOT or
 * CHAR_ANY, then RNG_UPPER optionally, then any number of CHAR_ALT each optionally followed by
 * RNG_UPPER (what llama_grammar_match_char walks). Anything else is PG_EGRAMMAR_RULES.
 *
 * Termination: llama_grammar_advance_stack replaces a rule reference on top of a stack by the
 * rule's alternatives, keeping the element after the reference under them unless the reference
 * ends its alternative. Without consuming input a rule A reaches B when B is referenced in an
 * alternative of A after only rule references that can match nothing (nullable). If such a chain
 * leads from a rule back to itself through a reference that does NOT end its alternative, every
 * turn leaves one more element on the stack and llama.cpp expands forever (its left-recursion
 * check misses the cases where the nullable rule is not literally empty). Chains that return
 * through alternative-ending references only replace the top, so the stack repeats and llama.cpp's
 * "seen" set stops them: those are fine (llama.cpp's own test grammar `( [x]* )*` has one). So:
 * strongly connected components of the "reaches" graph; a non-ending edge inside one is refused. */
#include <stdlib.h>
#include <string.h>
#include "grammar/internal.h"

enum {
    DEFAULT_MAX_STACKS = 4096, DEFAULT_MAX_EXPANSIONS = 1 << 20, DEFAULT_MASK_CACHE = 32
};
#define DEFAULT_SOFT_BYTES (32LL << 20)
#define DEFAULT_HARD_BYTES (256LL << 20)

typedef struct { uint32_t from, to; uint8_t ends; } edge;

/* 0, or PG_EGRAMMAR_RECURSION with *where = the rule */
static int check_expansion_terminates(pg_grammar *g, int64_t *where) {
    int rc = PG_ENOMEM;
    uint32_t n = (uint32_t)g->n_rules, n_alts = g->alt_off[n];
    uint8_t *nullable = calloc(n, 1);
    uint32_t *alt_rule = malloc(((size_t)n_alts + 1) * sizeof(uint32_t));
    uint32_t *missing = calloc((size_t)n_alts + 1, sizeof(uint32_t));   /* refs not yet nullable */
    uint32_t *occ_off = calloc((size_t)n + 1, sizeof(uint32_t));        /* by referenced rule */
    uint32_t *occ = NULL, *queue = malloc(((size_t)n + 1) * sizeof(uint32_t));
    uint8_t *all_refs = calloc((size_t)n_alts + 1, 1);
    edge *edges = NULL;
    uint32_t *adj_off = NULL, *adj = NULL, *index = NULL, *low = NULL, *comp = NULL, *tstack = NULL;
    uint32_t *cstack = NULL, *iter = NULL;
    uint8_t *on = NULL;
    if (!nullable || !alt_rule || !missing || !occ_off || !queue || !all_refs) goto done;

    /* nullable rules, by counting each all-references alternative's references down */
    uint64_t n_occ = 0;
    for (uint32_t r = 0; r < n; r++) {
        for (uint32_t a = g->alt_off[r]; a < g->alt_off[r + 1]; a++) {
            alt_rule[a] = r;
            uint32_t p = g->alts[a], refs = 0;
            int only_refs = 1;
            for (; !gram_is_eos(g, p); p++) {
                if (g->el[p].type != GT_RULE_REF) { only_refs = 0; break; }
                refs++;
            }
            all_refs[a] = (uint8_t)only_refs;
            if (!only_refs) continue;
            missing[a] = refs;
            for (p = g->alts[a]; !gram_is_eos(g, p); p++) occ_off[g->el[p].value + 1]++;
            n_occ += refs;
        }
    }
    for (uint32_t r = 0; r < n; r++) occ_off[r + 1] += occ_off[r];
    occ = malloc((n_occ + 1) * sizeof(uint32_t));
    uint32_t *fill = calloc((size_t)n + 1, sizeof(uint32_t));
    if (!occ || !fill) { free(fill); goto done; }
    for (uint32_t a = 0; a < n_alts; a++) {
        if (!all_refs[a]) continue;
        for (uint32_t p = g->alts[a]; !gram_is_eos(g, p); p++) {
            uint32_t b = g->el[p].value;
            occ[occ_off[b] + fill[b]++] = a;
        }
    }
    free(fill);
    uint32_t qh = 0, qt = 0;
    for (uint32_t a = 0; a < n_alts; a++) {
        if (all_refs[a] && missing[a] == 0 && !nullable[alt_rule[a]]) {
            nullable[alt_rule[a]] = 1;
            queue[qt++] = alt_rule[a];
        }
    }
    while (qh < qt) {
        uint32_t b = queue[qh++];
        for (uint32_t k = occ_off[b]; k < occ_off[b + 1]; k++) {
            uint32_t a = occ[k];
            if (--missing[a] == 0 && !nullable[alt_rule[a]]) {
                nullable[alt_rule[a]] = 1;
                queue[qt++] = alt_rule[a];
            }
        }
    }

    /* the "reaches without consuming input" edges */
    uint64_t n_edges = 0, cap_edges = 64;
    edges = malloc(cap_edges * sizeof(edge));
    if (!edges) goto done;
    for (uint32_t r = 0; r < n; r++) {
        for (uint32_t a = g->alt_off[r]; a < g->alt_off[r + 1]; a++) {
            for (uint32_t p = g->alts[a]; g->el[p].type == GT_RULE_REF; p++) {
                if (n_edges == cap_edges) {
                    edge *e = realloc(edges, 2 * cap_edges * sizeof(edge));
                    if (!e) goto done;
                    edges = e;
                    cap_edges *= 2;
                }
                edges[n_edges].from = r;
                edges[n_edges].to = g->el[p].value;
                edges[n_edges].ends = (uint8_t)gram_is_eos(g, p + 1);
                n_edges++;
                if (!nullable[g->el[p].value]) break;
            }
        }
    }

    /* Tarjan's strongly connected components, iteratively */
    adj_off = calloc((size_t)n + 1, sizeof(uint32_t));
    adj = malloc((n_edges + 1) * sizeof(uint32_t));
    index = malloc(((size_t)n + 1) * sizeof(uint32_t));
    low = malloc(((size_t)n + 1) * sizeof(uint32_t));
    comp = malloc(((size_t)n + 1) * sizeof(uint32_t));
    tstack = malloc(((size_t)n + 1) * sizeof(uint32_t));
    cstack = malloc(((size_t)n + 1) * sizeof(uint32_t));
    iter = malloc(((size_t)n + 1) * sizeof(uint32_t));
    on = calloc((size_t)n + 1, 1);
    if (!adj_off || !adj || !index || !low || !comp || !tstack || !cstack || !iter || !on) goto done;
    for (uint64_t e = 0; e < n_edges; e++) adj_off[edges[e].from + 1]++;
    for (uint32_t r = 0; r < n; r++) adj_off[r + 1] += adj_off[r];
    for (uint32_t r = 0; r < n; r++) iter[r] = adj_off[r];
    for (uint64_t e = 0; e < n_edges; e++) adj[iter[edges[e].from]++] = edges[e].to;
    const uint32_t UNSEEN = 0xffffffffu;
    for (uint32_t r = 0; r < n; r++) index[r] = UNSEEN;
    uint32_t next_index = 0, n_comp = 0, ts = 0;
    for (uint32_t root = 0; root < n; root++) {
        if (index[root] != UNSEEN) continue;
        uint32_t cs = 0;
        index[root] = low[root] = next_index++;
        tstack[ts++] = root;
        on[root] = 1;
        iter[root] = adj_off[root];
        cstack[cs++] = root;
        while (cs) {
            uint32_t v = cstack[cs - 1];
            if (iter[v] < adj_off[v + 1]) {
                uint32_t w = adj[iter[v]++];
                if (index[w] == UNSEEN) {
                    index[w] = low[w] = next_index++;
                    tstack[ts++] = w;
                    on[w] = 1;
                    iter[w] = adj_off[w];
                    cstack[cs++] = w;
                } else if (on[w] && index[w] < low[v]) {
                    low[v] = index[w];
                }
            } else {
                cs--;
                if (cs && low[v] < low[cstack[cs - 1]]) low[cstack[cs - 1]] = low[v];
                if (low[v] == index[v]) {
                    uint32_t w;
                    do {
                        w = tstack[--ts];
                        on[w] = 0;
                        comp[w] = n_comp;
                    } while (w != v);
                    n_comp++;
                }
            }
        }
    }
    rc = PG_OK;
    for (uint64_t e = 0; e < n_edges; e++) {
        if (!edges[e].ends && comp[edges[e].from] == comp[edges[e].to]) {
            *where = edges[e].from;
            rc = PG_EGRAMMAR_RECURSION;
            break;
        }
    }
done:
    free(nullable); free(alt_rule); free(missing); free(occ_off); free(occ); free(queue); free(all_refs);
    free(edges); free(adj_off); free(adj); free(index); free(low); free(comp); free(tstack); free(cstack);
    free(iter); free(on);
    return rc;
}

/* the shape check; fills alt_off/alts, next_item and the ASCII tables */
static int check_rules(pg_grammar *g, const int64_t *rule_offsets, int64_t *where) {
    int64_t n_alts = 0;
    for (int64_t r = 0; r < g->n_rules; r++) {
        int64_t s = rule_offsets[r], e = rule_offsets[r + 1];
        if (e <= s) { *where = s; return PG_EGRAMMAR_RULES; }
        for (int64_t p = s; p < e; p++) {
            uint32_t t = g->el[p].type;
            if (t >= GT_N_TYPES || (t == GT_END) != (p == e - 1)) { *where = p; return PG_EGRAMMAR_RULES; }
            if (t == GT_ALT) n_alts++;
        }
        n_alts++;
    }
    g->alt_off = malloc(((size_t)g->n_rules + 1) * sizeof(uint32_t));
    g->alts = malloc(((size_t)n_alts + 1) * sizeof(uint32_t));
    if (!g->alt_off || !g->alts) return PG_ENOMEM;
    uint32_t k = 0;
    for (int64_t r = 0; r < g->n_rules; r++) {
        uint32_t s = (uint32_t)rule_offsets[r], e = (uint32_t)rule_offsets[r + 1];
        g->alt_off[r] = k;
        g->alts[k++] = s;
        uint32_t p = s;
        while (p < e - 1) {
            uint32_t t = g->el[p].type;
            if (t == GT_ALT) {
                g->alts[k++] = ++p;
            } else if (t == GT_RULE_REF) {
                if (g->el[p].value >= (uint64_t)g->n_rules) { *where = p; return PG_EGRAMMAR_RULES; }
                p++;
            } else if (gram_is_token(t)) {
                p++;
            } else if (gram_is_char(t)) {
                uint32_t q = p;   /* as llama_grammar_match_char walks the group; END ends it (e - 1) */
                do {
                    q += g->el[q + 1].type == GT_RNG_UPPER ? 2 : 1;
                } while (g->el[q].type == GT_CHAR_ALT);
                g->next_item[p] = q;
                grammar_char_tables(g, p);
                p = q;
            } else {
                *where = p;   /* RNG_UPPER or CHAR_ALT where an item starts */
                return PG_EGRAMMAR_RULES;
            }
        }
    }
    g->alt_off[g->n_rules] = k;
    return PG_OK;
}

void pg_grammar_free(pg_grammar *g) {
    if (!g) return;
    grammar_caches_free(g);
    free(g->el); free(g->alt_off); free(g->alts); free(g->next_item); free(g->ascii);
    free(g->todo); free(g->out); free(g->tmp); free(g->cps);
    free(g->w_set); free(g->w_val); free(g->w_rem); free(g->w_cont);
    if (g->cache)
        for (int64_t i = 0; i < g->n_cache; i++) free(g->cache[i].bits);
    free(g->cache);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

int grammar_start_set(pg_grammar *g, int64_t *set);   /* match.c */

int pg_grammar_new(const uint32_t *types, const uint32_t *values, int64_t n_elements,
                   const int64_t *rule_offsets, int64_t n_rules, int64_t root,
                   const pg_token_trie *trie, const pg_grammar_limits *limits,
                   pg_grammar **out, int64_t *where) {
    int64_t dummy;
    if (!where) where = &dummy;
    *where = -1;
    if (!out) return PG_EBADARG;
    *out = NULL;
    if (!types || !values || !rule_offsets || !trie || n_rules < 1 || n_elements < 1
        || n_elements >= 0x7fffffffLL || root < 0 || root >= n_rules)
        return PG_EBADARG;
    if (rule_offsets[0] != 0 || rule_offsets[n_rules] != n_elements) return PG_EBADARG;
    for (int64_t r = 0; r < n_rules; r++)
        if (rule_offsets[r + 1] < rule_offsets[r]) return PG_EBADARG;

    pg_grammar *g = calloc(1, sizeof *g);
    if (!g) return PG_ENOMEM;
    if (pthread_mutex_init(&g->lock, NULL) != 0) { free(g); return PG_ENOMEM; }
    g->trie = trie;
    g->lim.max_stacks = limits && limits->max_stacks > 0 ? limits->max_stacks : DEFAULT_MAX_STACKS;
    g->lim.max_expansions = limits && limits->max_expansions > 0 ? limits->max_expansions : DEFAULT_MAX_EXPANSIONS;
    g->lim.soft_bytes = limits && limits->soft_bytes > 0 ? limits->soft_bytes : DEFAULT_SOFT_BYTES;
    g->lim.hard_bytes = limits && limits->hard_bytes > 0 ? limits->hard_bytes : DEFAULT_HARD_BYTES;
    g->lim.mask_cache = limits && limits->mask_cache > 0 ? limits->mask_cache : DEFAULT_MASK_CACHE;
    if (g->lim.hard_bytes < g->lim.soft_bytes) g->lim.hard_bytes = g->lim.soft_bytes;
    g->n_elems = n_elements;
    g->n_rules = n_rules;
    g->root = (uint32_t)root;
    int rc = PG_ENOMEM;
    g->el = malloc((size_t)n_elements * sizeof(gelem));
    g->next_item = calloc((size_t)n_elements, sizeof(uint32_t));
    g->ascii = calloc((size_t)n_elements * 2, sizeof(uint64_t));
    if (!g->el || !g->next_item || !g->ascii) goto fail;
    for (int64_t i = 0; i < n_elements; i++) {
        g->el[i].type = types[i];
        g->el[i].value = values[i];
    }
    rc = check_rules(g, rule_offsets, where);
    if (rc) goto fail;
    rc = check_expansion_terminates(g, where);
    if (rc) goto fail;

    /* scratch sized by the trie: the walk's per-depth state, its allowed flags, the mask cache */
    const pg_token_trie *t = trie;
    size_t depth = (size_t)t->max_depth + 2;
    g->w_set = malloc(depth * sizeof(uint32_t));
    g->w_val = malloc(depth * sizeof(uint32_t));
    g->w_rem = malloc(depth * sizeof(int32_t));
    g->w_cont = malloc(depth);
    g->n_cache = g->lim.mask_cache;
    g->cache = calloc((size_t)g->n_cache, sizeof(mask_entry));
    rc = PG_ENOMEM;
    if (!g->w_set || !g->w_val || !g->w_rem || !g->w_cont || !g->cache) goto fail;
    size_t words = ((size_t)t->n_vocab + 63) / 64 + 1;
    for (int64_t i = 0; i < g->n_cache; i++) {
        g->cache[i].bits = malloc(words * sizeof(uint64_t));
        if (!g->cache[i].bits) goto fail;
    }
    g->fixed_bytes = (int64_t)sizeof *g + n_elements * (8 + 4 + 16) + (n_rules + 1) * 4
                     + (int64_t)g->alt_off[n_rules] * 4 + (int64_t)depth * 13
                     + g->n_cache * ((int64_t)sizeof(mask_entry) + (int64_t)words * 8);
    rc = grammar_caches_init(g);
    if (rc) goto fail;
    int64_t start;
    rc = grammar_start_set(g, &start);
    if (rc) goto fail;
    if (start == 0) { rc = PG_EGRAMMAR_EMPTY; *where = root; goto fail; }
    *out = g;
    return PG_OK;
fail:
    pg_grammar_free(g);
    return rc;
}

void pg_grammar_flush(pg_grammar *g) {
    pthread_mutex_lock(&g->lock);
    grammar_caches_flush(g);
    pthread_mutex_unlock(&g->lock);
}

void pg_grammar_flush_masks(pg_grammar *g) {
    pthread_mutex_lock(&g->lock);
    for (int64_t i = 0; i < g->n_cache; i++) g->cache[i].valid = 0;
    pthread_mutex_unlock(&g->lock);
}

void pg_grammar_get_stats(pg_grammar *g, pg_grammar_stats *stats) {
    pthread_mutex_lock(&g->lock);
    *stats = g->stats;
    stats->bytes = g->bytes;
    stats->stack_nodes = g->n_nodes;
    stats->stack_sets = g->n_sets;
    stats->transitions = (int64_t)g->memo_count;
    for (uint32_t i = 0; i < g->n_sets; i++) {
        const uint32_t *tbl = g->set_ascii ? g->set_ascii[i] : NULL;
        if (!tbl) continue;
        for (int c = 0; c < 128; c++) stats->transitions += tbl[c] != NO_TRANSITION;
    }
    pthread_mutex_unlock(&g->lock);
}
