/* Sampling (cffi cdefs): the top-k scan, llama.cpp's RNG, and the C sampling chain. */
#ifndef PYGGUF_API_SAMPLING_H
#define PYGGUF_API_SAMPLING_H

/* Positions of the k largest of x[0..n), largest first, ties in position order (as a stable
 * descending sort); NaNs are never chosen. Returns how many were written (< k when fewer than
 * k values are not NaN), or a negative PG_E* code. */
int64_t pg_top_k(const float *x, int64_t n, int64_t k, int64_t *positions);

/* std::mt19937 (index 624 = the next draw regenerates the state). */
typedef struct {
    uint32_t state[624];
    int32_t index;
} pg_mt19937;
void pg_mt19937_seed(pg_mt19937 *rng, uint32_t seed);
uint32_t pg_mt19937_next(pg_mt19937 *rng);
int pg_mt19937_fill(pg_mt19937 *rng, uint32_t *out, int64_t n);
double pg_mt19937_uniform(pg_mt19937 *rng);        /* std::uniform_real_distribution<double>(0, 1) */
float pg_mt19937_uniform_float(pg_mt19937 *rng);   /* std::uniform_real_distribution<float>(0, 1) */

/* The sampling chain in C: logit bias, then the configured steps in order, then dist (one draw
 * from the RNG) or, for greedy, the first maximum. Each step computes what the Python sampler
 * of the same name (pygguf/samplers/filters.py) computes, in the same float32 operations, so the
 * chosen token is the same. */
enum {
    PG_CHAIN_PENALTIES = 1,      /* value = repeat, freq, present; over the window's token counts */
    PG_CHAIN_TOP_K = 2,          /* k */
    PG_CHAIN_TOP_P = 3,          /* value = p, k = min_keep */
    PG_CHAIN_MIN_P = 4,          /* value = p, k = min_keep */
    PG_CHAIN_TEMPERATURE = 5     /* value = temperature */
};
enum { PG_CHAIN_MAX_STEPS = 16 };
/* pg_chain_sample's answer when the Python chain must decide: a NaN among the logits, or no
 * finite logit left where probabilities are needed. Nothing was drawn from the RNG. */
enum { PG_CHAIN_DECLINED = -100 };

typedef struct {
    int32_t kind;
    int64_t k;
    double value, freq, present;
} pg_chain_step;

typedef struct pg_chain pg_chain;

/* A chain for one sampler: the steps, greedy (1: pick the first maximum instead of drawing) and
 * the logit bias (token ids unique, in [0, n_vocab)). Scratch grows on first use and is kept, so
 * sampling allocates nothing once warm. */
int pg_chain_new(int64_t n_vocab, const pg_chain_step *steps, int32_t n_steps, int32_t greedy,
                 const int32_t *bias_ids, const float *bias_values, int64_t n_bias, pg_chain **out);
void pg_chain_free(pg_chain *chain);

/* The chosen token for logits[0..n_vocab), the penalty window (the last accepted tokens, any
 * order), and rng; or PG_CHAIN_DECLINED, or a negative PG_E* code. */
int64_t pg_chain_sample(pg_chain *chain, const float *logits, int64_t n_logits, const int32_t *window,
                        int64_t n_window, pg_mt19937 *rng);

#endif
