/* GBNF grammar matching (cffi cdefs): llama.cpp's grammar semantics (src/llama-grammar.cpp) over
 * a vocabulary's token pieces, for pygguf/grammar/matcher.py.
 *
 * Rules are llama.cpp's flat element encoding: rule i is a run of (type, value) elements ending
 * with END, alternatives separated by ALT. A state is llama.cpp's: a set of stacks of element
 * positions (each stack's top a terminal, or the stack empty: the input may end there) plus a
 * partial UTF-8 sequence left over from the last token. Nothing trusts the rules: a bad rule
 * reference, a rule without END, a misplaced range element, or a rule that can reach itself
 * without consuming input *and* with something left to match after it (which would make
 * llama.cpp's stack expansion grow forever) is refused when the grammar is made.
 *
 * Speed: the vocabulary's pieces are a byte trie (made once per vocabulary, shared by grammars);
 * the set of allowed tokens is one walk over the trie that prunes a subtree as soon as its prefix
 * cannot continue. Stacks are hash-consed (a stack = its top position + the id of the stack under
 * it), sets of stacks are interned, and the step "set S reads code point c" is memoized, so after
 * warm-up a walk mostly reads tables. The allowed set of each (stack set, partial UTF-8) is kept
 * (a few, least recently used first out). The caches are bounded: past soft_bytes they are
 * dropped before the next call; an operation that needs more than hard_bytes, more than
 * max_stacks stacks in one set, or more than max_expansions rule expansions for one step fails
 * with a code instead of running on.
 *
 * A grammar serializes its callers with a mutex; a state belongs to one caller at a time. */
#ifndef PYGGUF_API_GRAMMAR_H
#define PYGGUF_API_GRAMMAR_H

/* grammar status codes, beside status.h's */
enum {
    PG_EGRAMMAR_RULES = -20,      /* malformed rules (*where = the element position) */
    PG_EGRAMMAR_RECURSION = -21,  /* a rule reaches itself without consuming input, not at its end (*where = the rule) */
    PG_EGRAMMAR_EMPTY = -22,      /* the root expands to no stack at all: no input can match */
    PG_EGRAMMAR_STACKS = -23,     /* more than max_stacks stacks, or max_expansions expansions in one step */
    PG_EGRAMMAR_LIMIT = -24,      /* the caches would pass hard_bytes */
    PG_EGRAMMAR_REJECTED = -25    /* the input leaves no stack: not accepted (the state is unchanged) */
};

/* element types: llama.cpp's enum llama_gretype */
enum {
    PG_GRAMMAR_END = 0, PG_GRAMMAR_ALT = 1, PG_GRAMMAR_RULE_REF = 2, PG_GRAMMAR_CHAR = 3,
    PG_GRAMMAR_CHAR_NOT = 4, PG_GRAMMAR_CHAR_RNG_UPPER = 5, PG_GRAMMAR_CHAR_ALT = 6,
    PG_GRAMMAR_CHAR_ANY = 7, PG_GRAMMAR_TOKEN = 8, PG_GRAMMAR_TOKEN_NOT = 9
};

typedef struct pg_token_trie pg_token_trie;
typedef struct pg_grammar pg_grammar;
typedef struct pg_grammar_state pg_grammar_state;

/* The vocabulary as the grammar sees it: token t's piece is data[offsets[t]..offsets[t+1]) (the
 * bytes llama.cpp's token_to_piece(t, special=true) gives); eog_ids the end-of-generation tokens.
 * As llama.cpp: an EOG token is allowed exactly when some stack is empty, whatever its piece; a
 * token whose piece is empty or starts with a NUL byte is never allowed; a piece is read up to
 * its first NUL byte (llama.cpp decodes it as a C string). */
typedef struct {
    int64_t n_vocab;
    int64_t n_nodes;       /* trie nodes, the root included */
    int64_t n_tokens;      /* tokens in the trie (not EOG, piece not empty, first byte not NUL) */
    int64_t max_depth;     /* the longest piece, in bytes */
    int64_t bytes;         /* memory the trie holds */
} pg_token_trie_info;

int pg_token_trie_new(const uint8_t *data, const int64_t *offsets, int64_t n_vocab,
                      const int32_t *eog_ids, int64_t n_eog, pg_token_trie **out);
void pg_token_trie_free(pg_token_trie *trie);
void pg_token_trie_get_info(const pg_token_trie *trie, pg_token_trie_info *info);

/* Limits; a field <= 0 takes its default (max_stacks 4096, max_expansions 1<<20, soft_bytes
 * 32 MiB, hard_bytes 256 MiB, mask_cache 32 allowed sets). */
typedef struct {
    int64_t max_stacks;
    int64_t max_expansions;
    int64_t soft_bytes;
    int64_t hard_bytes;
    int64_t mask_cache;
} pg_grammar_limits;

/* The rules back to back: element k is (types[k], values[k]); rule i is the elements
 * [rule_offsets[i], rule_offsets[i+1]) and must end with its only END. The trie must outlive the
 * grammar. On an error, *where says where (see the codes), else -1. */
int pg_grammar_new(const uint32_t *types, const uint32_t *values, int64_t n_elements,
                   const int64_t *rule_offsets, int64_t n_rules, int64_t root,
                   const pg_token_trie *trie, const pg_grammar_limits *limits,
                   pg_grammar **out, int64_t *where);
void pg_grammar_free(pg_grammar *g);
void pg_grammar_flush(pg_grammar *g);          /* drop every cache now (states stay valid) */
void pg_grammar_flush_masks(pg_grammar *g);    /* drop only the cached allowed sets */

typedef struct {
    int64_t bytes;           /* memory held now: rules, caches, scratch (not the trie) */
    int64_t stack_nodes;     /* hash-consed stack nodes now */
    int64_t stack_sets;      /* interned stack sets now */
    int64_t transitions;     /* memoized (set, code point) steps now */
    int64_t walks;           /* trie walks (allowed sets computed) so far */
    int64_t walk_nodes;      /* trie nodes those walks visited */
    int64_t mask_hits;       /* allowed sets found in the cache */
    int64_t flushes;         /* times the caches were dropped for size */
} pg_grammar_stats;
void pg_grammar_get_stats(pg_grammar *g, pg_grammar_stats *stats);

/* States. The start state: the root's alternatives, expanded. States of one grammar share its
 * caches; a state holds its own copy of its stacks, so it survives a flush. */
typedef struct {
    int64_t n_stacks;
    int64_t n_positions;     /* sum of the stacks' lengths */
    int32_t can_end;         /* some stack is empty: an EOG token is allowed */
    uint32_t partial_value;  /* llama.cpp's llama_partial_utf8 */
    int32_t partial_remain;
} pg_grammar_state_info;

int pg_grammar_state_new(pg_grammar *g, pg_grammar_state **out);
int pg_grammar_state_copy(const pg_grammar_state *st, pg_grammar_state **out);
void pg_grammar_state_free(pg_grammar_state *st);
void pg_grammar_state_get_info(const pg_grammar_state *st, pg_grammar_state_info *info);
/* The stacks, bottom to top, back to back (element positions into the rules as given): lengths[i]
 * is stack i's length. Returns the number of stacks, or PG_EBADSIZE when a buffer is too small. */
int64_t pg_grammar_state_stacks(const pg_grammar_state *st, uint32_t *positions, int64_t max_positions,
                                uint32_t *lengths, int64_t max_stacks);

/* 1 if llama.cpp's llama_grammar_apply_impl would leave token's logit alone in this state, 0 if
 * it would set it to -inf; or a negative code. */
int pg_grammar_allows(pg_grammar_state *st, int32_t token);
/* The same for every token: out[t] = 0/1 (out may be NULL). Returns how many are allowed and
 * writes to *n_not_eog (may be NULL) how many of those are not EOG tokens; or a negative code. */
int64_t pg_grammar_allowed(pg_grammar_state *st, uint8_t *out, int64_t n, int64_t *n_not_eog);
/* logits[t] = -inf for every token not allowed (n must be the vocabulary size). Returns what
 * pg_grammar_allowed returns. */
int64_t pg_grammar_mask(pg_grammar_state *st, float *logits, int64_t n, int64_t *n_not_eog);

/* Advance over a token of the vocabulary, as llama.cpp's llama_grammar_accept_impl: an EOG token
 * changes nothing when some stack is empty; any other token is llama_grammar_accept_token with its
 * piece. PG_EGRAMMAR_REJECTED (state unchanged) where llama.cpp would abort or throw. */
int pg_grammar_accept(pg_grammar_state *st, int32_t token);
/* llama_grammar_accept_token(token, piece): token elements see the id, characters the piece. */
int pg_grammar_accept_piece(pg_grammar_state *st, int32_t token, const uint8_t *piece, int64_t n);
/* llama_grammar_accept_str(text): every code point through every stack (token elements drop). */
int pg_grammar_accept_text(pg_grammar_state *st, const uint8_t *text, int64_t n);

#endif
