/* The grammar matcher's shared structures (csrc/grammar/). See api/grammar.h for what it does. */
#ifndef PYGGUF_GRAMMAR_INTERNAL_H
#define PYGGUF_GRAMMAR_INTERNAL_H

#include <stdint.h>
#include <stddef.h>
#include <pthread.h>
#include "api/status.h"
#include "api/grammar.h"

enum {
    GT_END = PG_GRAMMAR_END, GT_ALT = PG_GRAMMAR_ALT, GT_RULE_REF = PG_GRAMMAR_RULE_REF,
    GT_CHAR = PG_GRAMMAR_CHAR, GT_CHAR_NOT = PG_GRAMMAR_CHAR_NOT, GT_RNG_UPPER = PG_GRAMMAR_CHAR_RNG_UPPER,
    GT_CHAR_ALT = PG_GRAMMAR_CHAR_ALT, GT_CHAR_ANY = PG_GRAMMAR_CHAR_ANY, GT_TOKEN = PG_GRAMMAR_TOKEN,
    GT_TOKEN_NOT = PG_GRAMMAR_TOKEN_NOT, GT_N_TYPES = 10
};

#define DECODE_INVALID 0xFF

/* token kinds in the trie */
enum { TOK_REFUSED = 0, TOK_TRIE = 1, TOK_EOG = 2 };

/* The vocabulary's pieces as a trie in preorder: node 0 is the root (the empty prefix), a node's
 * subtree is the nodes [i, i + size[i]), children in byte order. The tokens of the trie are listed
 * in preorder of the node their piece ends at (tokens[]), so a subtree's tokens are
 * tokens[tok_begin[i] .. tok_begin[i + size[i]]) and those ending at node i come first:
 * tokens[tok_begin[i] .. tok_begin[i + 1]). */
struct pg_token_trie {
    int64_t n_vocab, n_nodes, n_tokens;
    uint32_t max_depth;
    uint8_t *byte;          /* [n_nodes] the byte on the edge into the node (root: 0) */
    uint32_t *dval;         /* [n_nodes] decode_utf8 of the node's prefix from no partial state: */
    uint8_t *drem;          /*   drem 0: dval is the code point the node's byte completes; 1..3: the
                                 bytes still to come and dval the value so far; DECODE_INVALID */
    uint32_t *depth;        /* [n_nodes] */
    uint32_t *size;         /* [n_nodes] */
    uint32_t *tok_begin;    /* [n_nodes + 1] */
    int32_t *tokens;        /* [n_tokens] */
    uint8_t *valid_from;    /* [n_tokens] bit k: the piece's bytes from offset k on, decoded from a
                               character boundary, have no invalid lead byte (k = 0..3) */
    int32_t *dfs_index;     /* [n_vocab] token -> index in tokens, or -1 */
    uint8_t *kind;          /* [n_vocab] TOK_* */
    int32_t *eog_ids;       /* [n_eog] */
    int64_t n_eog;
    uint8_t *pieces;        /* every piece, up to its first NUL, back to back */
    int64_t *piece_off;     /* [n_vocab + 1] */
    int64_t bytes;
};

typedef struct { uint32_t type, value; } gelem;

typedef struct {
    uint32_t set, pval;
    int32_t nrem, valid;
    uint64_t tick;
    uint64_t *bits;          /* n_vocab bits: allowed tokens */
    int64_t n_allowed, n_not_eog;
} mask_entry;

/* set flags */
enum { SET_HAS_EMPTY = 1, SET_HAS_TOKEN = 2, SET_HAS_CHAR = 4 };

#define NO_TRANSITION 0xFFFFFFFFu

struct pg_grammar {
    pthread_mutex_t lock;
    const pg_token_trie *trie;
    pg_grammar_limits lim;

    /* rules */
    int64_t n_elems, n_rules;
    gelem *el;
    uint32_t root;
    uint32_t *alt_off;      /* [n_rules + 1] into alts */
    uint32_t *alts;         /* first element of each alternative, rule by rule */
    uint32_t *next_item;    /* [n_elems] for the first element of a character group: the element after it */
    uint64_t *ascii;        /* [n_elems * 2] for a group's first element: which code points < 128 it matches */

    /* hash-consed stacks: node 0 is the empty stack; node s > 0 is position npos[s] on top of
     * the stack nparent[s] */
    uint32_t *npos, *nparent, *seen;
    uint32_t n_nodes, cap_nodes, seen_stamp;
    uint32_t *node_table; uint32_t node_table_mask;     /* open addressing, 0 = free */

    /* interned sets of stacks (sorted node ids); set 0 is the empty set */
    uint32_t *set_off, *set_len;
    uint8_t *set_flags;
    uint32_t **set_ascii;   /* per set, lazily: the set after each code point < 128 */
    uint64_t n_ascii_tables;
    uint32_t n_sets, cap_sets;
    uint32_t *arena; uint64_t n_arena, cap_arena;
    uint32_t *set_table; uint32_t set_table_mask;

    /* memoized steps for code points >= 128: key (set << 32 | cp) */
    uint64_t *memo_keys; uint32_t *memo_vals; uint64_t memo_count, memo_mask;

    /* scratch */
    uint32_t *todo; uint64_t cap_todo;
    uint32_t *out; uint64_t n_out, cap_out;
    uint32_t *tmp; uint64_t cap_tmp;
    uint32_t *cps; uint64_t cap_cps;
    /* trie walk */
    uint32_t *w_set, *w_val; int32_t *w_rem; uint8_t *w_cont;
    uint64_t *w_bits;       /* the walk's output: allowed tokens, one bit per token id */
    uint8_t w_valid_bit;    /* the walk's bit of trie->valid_from: 1 << the partial sequence's remaining bytes */

    mask_entry *cache; int64_t n_cache; uint64_t tick;

    uint64_t gen;           /* bumped by every flush: states re-intern their stacks */
    int64_t bytes;          /* what the caches hold now (kept up to date by the growers) */
    int64_t fixed_bytes;    /* rules and trie-sized scratch */
    pg_grammar_stats stats;
};

struct pg_grammar_state {
    pg_grammar *g;
    uint64_t gen;           /* set is valid while gen == g->gen */
    uint32_t set;
    uint32_t pval;
    int32_t nrem;
    int64_t n_stacks, n_pos;
    uint32_t *lens, *pos;   /* the stacks, bottom to top */
    int64_t cap_stacks, cap_pos;
};

/* stacks.c */
int grammar_caches_init(pg_grammar *g);
void grammar_caches_free(pg_grammar *g);
void grammar_caches_flush(pg_grammar *g);
int64_t grammar_intern_node(pg_grammar *g, uint32_t pos, uint32_t parent);
int64_t grammar_intern_set(pg_grammar *g, uint32_t *ids, uint64_t n);   /* sorts ids in place */
void grammar_collect_begin(pg_grammar *g);
int grammar_collect_advance(pg_grammar *g, uint32_t stack, uint64_t *expansions);
int64_t grammar_step(pg_grammar *g, uint32_t set, uint32_t cp);           /* set after reading cp */
void grammar_char_tables(pg_grammar *g, uint32_t pos);
int grammar_match_char(const pg_grammar *g, uint32_t pos, uint32_t cp);
int grammar_match_partial(const pg_grammar *g, uint32_t pos, uint32_t pval, int32_t nrem);
int grammar_reserve_u32(pg_grammar *g, uint32_t **buf, uint64_t *cap, uint64_t need);

static inline int gram_is_eos(const pg_grammar *g, uint32_t pos) {
    return g->el[pos].type == GT_END || g->el[pos].type == GT_ALT;
}
static inline int gram_is_char(uint32_t type) {
    return type == GT_CHAR || type == GT_CHAR_NOT || type == GT_CHAR_ANY;
}
static inline int gram_is_token(uint32_t type) {
    return type == GT_TOKEN || type == GT_TOKEN_NOT;
}
static inline int gram_match_token(const pg_grammar *g, uint32_t pos, int32_t token) {
    return g->el[pos].type == GT_TOKEN ? g->el[pos].value == (uint32_t)token : g->el[pos].value != (uint32_t)token;
}

#endif
