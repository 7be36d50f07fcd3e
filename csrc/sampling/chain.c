/* logits (n_vocab,) -> one token id: logit bias, then penalties / top-k / top-p / min-p /
 * temperature in the configured order, then dist (or the first maximum for greedy), each step
 * computing what its Python reference in pygguf/samplers/filters.py computes, in the same float32
 * operations and the same candidate order, so the same token comes out of the same RNG draw.
 *
 * Strategy: while the chain still spans the whole vocabulary, the few tokens whose logits the bias
 * and the penalties change are kept aside (the overlay) and the caller's logits are never copied;
 * a top-k step then scans them once for the k best outside the overlay and merges the overlay in,
 * so the usual chain touches the vocabulary in one read and works on ~40 candidates after that. Any other
 * step on the whole vocabulary copies it into scratch first (materialize). Anything the float
 * semantics of the two sides could disagree on (a NaN, no finite logit left) is declined, and
 * the Python chain decides; nothing has been drawn from the RNG by then. */
#include <stdint.h>
#include <stddef.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "api/status.h"
#include "api/sampling.h"
#include "sampling/sort.h"
#include "sampling/top_k.h"

enum { FIRST_TOP_P_PROBE = 256, PROBE_ABOVE = 1024 };   /* as filters.top_p: try the top 256 first */

typedef struct { void *data; size_t bytes; } buffer;

/* Scratch that grows on demand and is kept: the contents are not preserved across a growth. */
static void *reserve(buffer *b, int64_t count, size_t elem) {
    size_t bytes = (size_t)(count > 0 ? count : 1) * elem;
    if (bytes > b->bytes) {
        free(b->data);
        b->data = malloc(bytes);
        b->bytes = b->data ? bytes : 0;
    }
    return b->data;
}

struct pg_chain {
    int64_t n_vocab;
    pg_chain_step steps[PG_CHAIN_MAX_STEPS];
    int32_t n_steps, greedy, uses_window;
    int64_t n_bias;
    int32_t *bias_ids;                  /* (n_bias,) sorted, unique */
    float *bias_values;                 /* (n_bias,) */
    /* the overlay of one call: bias and window tokens, sorted by id, with their current logits
     * and window counts (pointers into the buffers below) */
    int32_t *over_ids, *over_counts, *over_order;
    float *over_values;
    int64_t n_over;
    buffer over_buffers[4], window_sorted;
    buffer ids[2], logits[2];           /* candidates, gathered from one pair into the other */
    buffer positions;                   /* int64: top-k scan output ... */
    buffer top_values;                  /* float: ... and its values */
    buffer order;                       /* int32: sort output */
    buffer sort_scratch;
    buffer weights;                     /* float: exp(l - max), probabilities */
};

/* The candidates of one pg_chain_sample call. */
typedef struct {
    const float *raw;        /* the caller's logits, never written */
    int whole;               /* 1: the whole vocabulary as raw + overlay, nothing materialized */
    int cur;                 /* which ids[]/logits[] pair holds the candidates */
    int32_t *ids;
    float *logits;
    int64_t n;
    int sorted;              /* descending logits, as Candidates.sorted */
    int identity;            /* ids[i] == i for every i < n */
} run_state;

/* C's (float)exp(x), as pygguf.samplers.candidates.exp_f32 */
static inline float exp_f32(float x) { return (float)exp((double)x); }

static int is_nan(float x) { return x != x; }

static float max_logit(const run_state *r) {
    if (r->sorted || r->n == 1) return r->logits[0];
    float m = r->logits[0];
    for (int64_t i = 1; i < r->n; i++)
        if (r->logits[i] > m) m = r->logits[i];
    return m;
}

static int64_t first_max(const run_state *r) {
    int64_t best = 0;
    for (int64_t i = 1; i < r->n; i++)
        if (r->logits[i] > r->logits[best]) best = i;
    return best;
}

/* --- the overlay ------------------------------------------------------------------------------ */
static int compare_ids(const void *a, const void *b) {
    const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static void sort_ids(int32_t *ids, int64_t n) {
    if (n > 64) {
        qsort(ids, (size_t)n, sizeof *ids, compare_ids);
        return;
    }
    for (int64_t i = 1; i < n; i++) {
        const int32_t v = ids[i];
        int64_t j = i;
        for (; j > 0 && ids[j - 1] > v; j--) ids[j] = ids[j - 1];
        ids[j] = v;
    }
}

/* overlay = bias tokens and window tokens, by id, with raw + bias logits and window counts */
static int build_overlay(pg_chain *c, const float *raw, const int32_t *window, int64_t n_window) {
    const int64_t most = c->n_bias + n_window;
    c->over_ids = reserve(&c->over_buffers[0], most, sizeof *c->over_ids);
    c->over_counts = reserve(&c->over_buffers[1], most, sizeof *c->over_counts);
    c->over_order = reserve(&c->over_buffers[2], most, sizeof *c->over_order);
    c->over_values = reserve(&c->over_buffers[3], most, sizeof *c->over_values);
    int32_t *w = reserve(&c->window_sorted, n_window, sizeof *w);
    if (!c->over_ids || !c->over_counts || !c->over_order || !c->over_values || !w) return PG_ENOMEM;
    for (int64_t j = 0; j < n_window; j++) {
        if (window[j] < 0 || window[j] >= c->n_vocab) return PG_EBADARG;
        w[j] = window[j];
    }
    sort_ids(w, n_window);
    int64_t i = 0, j = 0, m = 0;
    while (i < c->n_bias || j < n_window) {
        const int from_bias = j >= n_window || (i < c->n_bias && c->bias_ids[i] <= w[j]);
        const int32_t id = from_bias ? c->bias_ids[i] : w[j];
        float value = raw[id];
        if (i < c->n_bias && c->bias_ids[i] == id) value += c->bias_values[i++];
        int32_t count = 0;
        for (; j < n_window && w[j] == id; j++) count++;
        if (is_nan(value)) return PG_CHAIN_DECLINED;
        c->over_ids[m] = id;
        c->over_values[m] = value;
        c->over_counts[m] = count;
        m++;
    }
    c->n_over = m;
    return PG_OK;
}

/* where token id sits in the overlay, or -1 */
static int64_t overlay_index(const pg_chain *c, int32_t id) {
    return pg_sorted_find_i32(c->over_ids, c->n_over, id);
}

/* --- candidates ------------------------------------------------------------------------------- */
/* Copy the whole vocabulary (raw, then the overlay's logits) into the candidate scratch. */
static int materialize(pg_chain *c, run_state *r) {
    const int64_t n = c->n_vocab;
    int32_t *ids = reserve(&c->ids[0], n, sizeof *ids);
    float *logits = reserve(&c->logits[0], n, sizeof *logits);
    if (!ids || !logits) return PG_ENOMEM;
    int nan = 0;
    for (int64_t i = 0; i < n; i++) {
        const float v = r->raw[i];
        logits[i] = v;
        nan |= is_nan(v);
    }
    if (nan) return PG_CHAIN_DECLINED;
    for (int64_t i = 0; i < n; i++) ids[i] = (int32_t)i;
    for (int64_t m = 0; m < c->n_over; m++) logits[c->over_ids[m]] = c->over_values[m];
    *r = (run_state){r->raw, 0, 0, ids, logits, n, 0, 1};
    return PG_OK;
}

/* Reserve the other candidate pair for n entries. */
static int other_pair(pg_chain *c, const run_state *r, int64_t n, int32_t **ids, float **logits) {
    *ids = reserve(&c->ids[1 - r->cur], n, sizeof **ids);
    *logits = reserve(&c->logits[1 - r->cur], n, sizeof **logits);
    return *ids && *logits ? PG_OK : PG_ENOMEM;
}

static void switch_pair(run_state *r, int32_t *ids, float *logits, int64_t n, int sorted) {
    *r = (run_state){r->raw, 0, 1 - r->cur, ids, logits, n, sorted, 0};
}

/* candidates = the current ones at positions[0..n) (int64 from the top-k scan) */
static int gather64(pg_chain *c, run_state *r, const int64_t *positions, int64_t n, int sorted) {
    int32_t *ids;
    float *logits;
    if (other_pair(c, r, n, &ids, &logits)) return PG_ENOMEM;
    for (int64_t i = 0; i < n; i++) {
        ids[i] = r->ids[positions[i]];
        logits[i] = r->logits[positions[i]];
    }
    switch_pair(r, ids, logits, n, sorted);
    return PG_OK;
}

/* candidates = the current ones at order[0..n) (int32 from the sort) */
static int gather32(pg_chain *c, run_state *r, const int32_t *order, int64_t n, int sorted) {
    int32_t *ids;
    float *logits;
    if (other_pair(c, r, n, &ids, &logits)) return PG_ENOMEM;
    for (int64_t i = 0; i < n; i++) {
        ids[i] = r->ids[order[i]];
        logits[i] = r->logits[order[i]];
    }
    switch_pair(r, ids, logits, n, sorted);
    return PG_OK;
}

/* order = the positions of the current candidates, stable-sorted by descending logit */
static int32_t *sorted_order(pg_chain *c, const float *values, int64_t n) {
    int32_t *order = reserve(&c->order, n, sizeof *order);
    void *scratch = reserve(&c->sort_scratch, (int64_t)pg_sort_scratch_bytes(n), 1);
    if (!order || !scratch) return NULL;
    pg_sort_desc(values, n, order, scratch);
    return order;
}

/* the top k of the current candidates (k < n), largest first, ties in candidate order */
static int64_t *top_positions(pg_chain *c, const run_state *r, int64_t k) {
    int64_t *positions = reserve(&c->positions, k, sizeof *positions);
    float *values = reserve(&c->top_values, k, sizeof *values);
    if (!positions || !values) return NULL;
    int nan;
    pg_top_k_scan(r->logits, r->n, k, positions, values, NULL, 0, &nan);   /* no NaN here: checked on entry */
    return positions;
}

/* --- the steps on the whole vocabulary (raw + overlay) ---------------------------------------- */
static int penalties_neutral(const pg_chain_step *s) {
    return s->value == 1.0 && s->freq == 0.0 && s->present == 0.0;
}

/* filters.penalties on one logit seen `count` times */
static float penalized(float x, int32_t count, const pg_chain_step *s) {
    const float repeat = (float)s->value;
    x = x <= 0.0f ? x * repeat : x / repeat;
    return x - ((float)count * (float)s->freq + (float)s->present);
}


/* top-k of raw + overlay without writing either: the k best tokens outside the overlay (one scan
 * of raw that skips the overlay's ids) merged with the overlay sorted by value, ties to the lower
 * id: the k best of the whole, in the order a stable sort of the whole would give. */
static int whole_top_k(pg_chain *c, run_state *r, int64_t k) {
    int64_t *positions = reserve(&c->positions, k, sizeof *positions);
    float *values = reserve(&c->top_values, k, sizeof *values);
    int32_t *ids = reserve(&c->ids[0], k, sizeof *ids);
    float *logits = reserve(&c->logits[0], k, sizeof *logits);
    void *scratch = reserve(&c->sort_scratch, (int64_t)pg_sort_scratch_bytes(c->n_over), 1);
    if (!positions || !values || !ids || !logits || !scratch) return PG_ENOMEM;
    int nan;
    const int64_t got = pg_top_k_scan(r->raw, c->n_vocab, k, positions, values, c->over_ids, c->n_over, &nan);
    if (nan) return PG_CHAIN_DECLINED;
    const int32_t *by_value = c->over_order;
    pg_sort_desc(c->over_values, c->n_over, c->over_order, scratch);
    int64_t a = 0, b = 0, n = 0;
    for (; n < k && (a < got || b < c->n_over); n++) {
        int from_raw = b >= c->n_over;
        if (a < got && b < c->n_over) {
            const float x = r->raw[positions[a]], y = c->over_values[by_value[b]];
            from_raw = x > y || (x == y && positions[a] < c->over_ids[by_value[b]]);
        }
        if (from_raw) {
            ids[n] = (int32_t)positions[a];
            logits[n] = r->raw[positions[a++]];
        } else {
            ids[n] = c->over_ids[by_value[b]];
            logits[n] = c->over_values[by_value[b++]];
        }
    }
    *r = (run_state){r->raw, 0, 0, ids, logits, n, 1, 0};
    return PG_OK;
}

/* One step while the candidates are still the whole vocabulary: the overlay absorbs penalties, a
 * top-k below the vocabulary size runs on raw + overlay, steps that change nothing stay lazy;
 * any other step needs the vocabulary materialized first (returns NEEDS_VOCABULARY). */
enum { NEEDS_VOCABULARY = 1 };

static int whole_step(pg_chain *c, run_state *r, const pg_chain_step *s, int64_t n_window) {
    switch (s->kind) {
    case PG_CHAIN_PENALTIES:
        if (n_window == 0 || penalties_neutral(s)) return PG_OK;
        for (int64_t m = 0; m < c->n_over; m++) {
            if (c->over_counts[m] == 0) continue;
            c->over_values[m] = penalized(c->over_values[m], c->over_counts[m], s);
            if (is_nan(c->over_values[m])) return PG_CHAIN_DECLINED;
        }
        return PG_OK;
    case PG_CHAIN_TOP_K:
        if (s->k <= 0) return PG_OK;
        if (s->k < c->n_vocab - c->n_over) return whole_top_k(c, r, s->k);
        return NEEDS_VOCABULARY;
    case PG_CHAIN_TOP_P:
        return s->value >= 1.0 ? PG_OK : NEEDS_VOCABULARY;
    case PG_CHAIN_MIN_P:
        return s->value <= 0.0 ? PG_OK : NEEDS_VOCABULARY;
    case PG_CHAIN_TEMPERATURE:
        return s->value == 1.0 ? PG_OK : NEEDS_VOCABULARY;
    }
    return PG_EBADARG;
}

/* --- the steps on materialized candidates (filters.py, step by step) -------------------------- */
static int step_penalties(pg_chain *c, run_state *r, const pg_chain_step *s, int64_t n_window) {
    if (n_window == 0 || penalties_neutral(s)) return PG_OK;
    int hit = 0;
    if (r->identity) {
        for (int64_t m = 0; m < c->n_over; m++) {
            if (c->over_counts[m] == 0) continue;
            float *x = &r->logits[c->over_ids[m]];
            *x = penalized(*x, c->over_counts[m], s);
            if (is_nan(*x)) return PG_CHAIN_DECLINED;
            hit = 1;
        }
    } else {
        for (int64_t i = 0; i < r->n; i++) {
            const int64_t m = overlay_index(c, r->ids[i]);
            if (m < 0 || c->over_counts[m] == 0) continue;
            r->logits[i] = penalized(r->logits[i], c->over_counts[m], s);
            if (is_nan(r->logits[i])) return PG_CHAIN_DECLINED;
            hit = 1;
        }
    }
    if (hit) r->sorted = 0;
    return PG_OK;
}

static int step_top_k(pg_chain *c, run_state *r, int64_t k) {
    if (k <= 0) return PG_OK;
    if (k > r->n) k = r->n;
    if (r->sorted) {
        r->n = k;
        return PG_OK;
    }
    if (k < r->n) {
        const int64_t *positions = top_positions(c, r, k);
        return positions ? gather64(c, r, positions, k, 1) : PG_ENOMEM;
    }
    const int32_t *order = sorted_order(c, r->logits, r->n);
    return order ? gather32(c, r, order, r->n, 1) : PG_ENOMEM;
}

/* filters._prefix_reaching: the length of the shortest prefix whose float32 running sum of
 * probabilities reaches p and that is at least min_keep long; -1 when not within the first k.
 * The i-th probability is probs[at32[i]], probs[at64[i]] or probs[i] (both NULL). */
static int64_t prefix_reaching(const float *probs, const int32_t *at32, const int64_t *at64, int64_t k,
                               float p, int64_t min_keep) {
    float cum = 0.0f;
    int64_t first = k;
    for (int64_t i = 0; i < k; i++) {
        cum += probs[at32 ? at32[i] : at64 ? at64[i] : i];
        if (cum >= p) {
            first = i;
            break;
        }
    }
    const int64_t last = first > min_keep - 1 ? first : min_keep - 1;
    return last < k ? last + 1 : -1;
}

static int step_top_p(pg_chain *c, run_state *r, double p, int64_t min_keep) {
    if (p >= 1.0) return PG_OK;
    const float max = max_logit(r);
    if (!isfinite(max)) return PG_CHAIN_DECLINED;
    float *probs = reserve(&c->weights, r->n, sizeof *probs);
    if (!probs) return PG_ENOMEM;
    float total = 0.0f;   /* softmax_probs: float32 exp, float32 running sum, float32 division */
    for (int64_t i = 0; i < r->n; i++) {
        probs[i] = exp_f32(r->logits[i] - max);
        total += probs[i];
    }
    for (int64_t i = 0; i < r->n; i++) probs[i] = probs[i] / total;
    const float pf = (float)p;
    if (r->sorted) {
        const int64_t keep = prefix_reaching(probs, NULL, NULL, r->n, pf, min_keep);
        if (keep >= 0) r->n = keep;
        return PG_OK;
    }
    if (r->n > PROBE_ABOVE) {   /* the top 256 usually reach p: no need to sort the rest */
        const int64_t *positions = top_positions(c, r, FIRST_TOP_P_PROBE);
        if (!positions) return PG_ENOMEM;
        const int64_t keep = prefix_reaching(probs, NULL, positions, FIRST_TOP_P_PROBE, pf, min_keep);
        if (keep >= 0) return gather64(c, r, positions, keep, 1);
    }
    const int32_t *order = sorted_order(c, r->logits, r->n);
    if (!order) return PG_ENOMEM;
    const int64_t keep = prefix_reaching(probs, order, NULL, r->n, pf, min_keep);
    return gather32(c, r, order, keep >= 0 ? keep : r->n, 1);
}

static int step_min_p(pg_chain *c, run_state *r, double p, int64_t min_keep) {
    if (p <= 0.0 || r->n == 0) return PG_OK;
    const float max = max_logit(r);
    if (!isfinite(max)) return PG_CHAIN_DECLINED;
    const float threshold = max + (float)log(p);
    int64_t n_keep = 0;
    for (int64_t i = 0; i < r->n; i++) n_keep += r->logits[i] >= threshold;
    if (n_keep >= (min_keep > 1 ? min_keep : 1)) {
        if (n_keep == r->n) return PG_OK;
        if (!r->sorted) {   /* the survivors, in candidate order */
            int64_t j = 0;
            for (int64_t i = 0; i < r->n; i++) {
                if (!(r->logits[i] >= threshold)) continue;
                r->ids[j] = r->ids[i];
                r->logits[j++] = r->logits[i];
            }
            r->identity = 0;
        }
        r->n = n_keep;      /* sorted: the survivors are a prefix */
        return PG_OK;
    }
    /* too few: the sorted candidates up to the first one below the threshold past min_keep */
    if (!r->sorted) {
        const int32_t *order = sorted_order(c, r->logits, r->n);
        if (!order) return PG_ENOMEM;
        const int rc = gather32(c, r, order, r->n, 1);
        if (rc) return rc;
    }
    int64_t end = r->n;
    for (int64_t i = min_keep > 1 ? min_keep : 1; i < r->n; i++) {
        if (r->logits[i] < threshold) {
            end = i;
            break;
        }
    }
    r->n = end;
    return PG_OK;
}

static int step_temperature(run_state *r, double temp) {
    if (temp <= 0.0) {   /* only the first maximum survives */
        const int64_t best = first_max(r);
        for (int64_t i = 0; i < r->n; i++)
            if (i != best) r->logits[i] = -INFINITY;
        return PG_OK;
    }
    if (temp == 1.0) return PG_OK;
    const float t = (float)temp;
    for (int64_t i = 0; i < r->n; i++) r->logits[i] = r->logits[i] / t;
    return PG_OK;
}

static int step(pg_chain *c, run_state *r, const pg_chain_step *s, int64_t n_window) {
    if (r->whole) {
        int rc = whole_step(c, r, s, n_window);
        if (rc != NEEDS_VOCABULARY) return rc;
        if ((rc = materialize(c, r))) return rc;
    }
    switch (s->kind) {
    case PG_CHAIN_PENALTIES: return step_penalties(c, r, s, n_window);
    case PG_CHAIN_TOP_K: return step_top_k(c, r, s->k);
    case PG_CHAIN_TOP_P: return step_top_p(c, r, s->value, s->k);
    case PG_CHAIN_MIN_P: return step_min_p(c, r, s->value, s->k);
    case PG_CHAIN_TEMPERATURE: return step_temperature(r, s->value);
    }
    return PG_EBADARG;
}

/* --- the end of the chain --------------------------------------------------------------------- */
/* filters.dist: float32 weights, a double running sum, the first position reaching sum * u */
static int64_t pick_dist(pg_chain *c, run_state *r, pg_mt19937 *rng) {
    if (r->n == 0) return PG_CHAIN_DECLINED;
    const float max = max_logit(r);
    if (!isfinite(max)) return PG_CHAIN_DECLINED;
    if (r->n == 1) return r->ids[0];   /* no draw, as filters.dist */
    float *weights = reserve(&c->weights, r->n, sizeof *weights);
    if (!weights) return PG_ENOMEM;
    double total = 0.0;
    for (int64_t i = 0; i < r->n; i++) {
        weights[i] = exp_f32(r->logits[i] - max);
        total += (double)weights[i];
    }
    const double target = total * pg_mt19937_uniform(rng);
    double running = 0.0;
    for (int64_t i = 0; i < r->n; i++) {
        running += (double)weights[i];
        if (running >= target) return r->ids[i];
    }
    return r->ids[r->n - 1];
}

/* Sampler._sample_greedy: the first maximum of the (biased, penalized) logits */
static int64_t pick_greedy(pg_chain *c, run_state *r) {
    int rc = PG_OK;
    if (r->whole) rc = 1 < c->n_vocab - c->n_over ? whole_top_k(c, r, 1) : materialize(c, r);
    if (rc) return rc;
    return r->n > 0 ? r->ids[first_max(r)] : PG_CHAIN_DECLINED;
}

int64_t pg_chain_sample(pg_chain *c, const float *logits, int64_t n_logits, const int32_t *window,
                        int64_t n_window, pg_mt19937 *rng) {
    if (!c || !logits || !rng || n_logits != c->n_vocab || n_window < 0 || n_window > INT32_MAX ||
        (n_window > 0 && !window))
        return PG_EBADARG;
    if (!c->uses_window) n_window = 0;
    int rc = build_overlay(c, logits, window, n_window);
    if (rc) return rc;
    run_state r = {logits, 1, 0, NULL, NULL, c->n_vocab, 0, 1};
    for (int32_t i = 0; i < c->n_steps; i++)
        if ((rc = step(c, &r, &c->steps[i], n_window))) return rc;
    if (c->greedy) return pick_greedy(c, &r);
    if (r.whole && (rc = materialize(c, &r))) return rc;
    return pick_dist(c, &r, rng);
}

/* --- construction ----------------------------------------------------------------------------- */
void pg_chain_free(pg_chain *c) {
    if (!c) return;
    free(c->bias_ids);
    free(c->bias_values);
    for (int i = 0; i < 4; i++) free(c->over_buffers[i].data);
    free(c->window_sorted.data);
    for (int i = 0; i < 2; i++) {
        free(c->ids[i].data);
        free(c->logits[i].data);
    }
    free(c->positions.data);
    free(c->top_values.data);
    free(c->order.data);
    free(c->sort_scratch.data);
    free(c->weights.data);
    free(c);
}

static int check_steps(const pg_chain_step *steps, int32_t n_steps) {
    if (n_steps < 0 || n_steps > PG_CHAIN_MAX_STEPS || (n_steps > 0 && !steps)) return PG_EBADARG;
    for (int32_t i = 0; i < n_steps; i++)
        if (steps[i].kind < PG_CHAIN_PENALTIES || steps[i].kind > PG_CHAIN_TEMPERATURE) return PG_EBADARG;
    return PG_OK;
}

/* the bias, sorted by id; ids must be in range and not repeat */
static int copy_bias(pg_chain *c, const int32_t *ids, const float *values, int64_t n) {
    int rc = PG_OK;
    for (int64_t i = 0; i < n && rc == PG_OK; i++) {
        if (ids[i] < 0 || ids[i] >= c->n_vocab) rc = PG_EBADARG;
        c->bias_ids[i] = ids[i];
    }
    if (rc == PG_OK) {
        sort_ids(c->bias_ids, n);
        for (int64_t i = 1; i < n; i++)
            if (c->bias_ids[i] == c->bias_ids[i - 1]) rc = PG_EBADARG;
    }
    for (int64_t i = 0; i < n && rc == PG_OK; i++) {   /* the value of each sorted id: binary search */
        int64_t lo = 0, hi = n;
        while (lo < hi) {
            const int64_t mid = lo + (hi - lo) / 2;
            if (c->bias_ids[mid] < ids[i]) lo = mid + 1;
            else hi = mid;
        }
        c->bias_values[lo] = values[i];
    }
    return rc;
}

int pg_chain_new(int64_t n_vocab, const pg_chain_step *steps, int32_t n_steps, int32_t greedy,
                 const int32_t *bias_ids, const float *bias_values, int64_t n_bias, pg_chain **out) {
    if (!out) return PG_EBADARG;
    *out = NULL;
    if (n_vocab <= 0 || n_vocab > INT32_MAX || n_bias < 0 || n_bias > n_vocab ||
        (n_bias > 0 && (!bias_ids || !bias_values)))
        return PG_EBADARG;
    int rc = check_steps(steps, n_steps);
    if (rc) return rc;
    pg_chain *c = calloc(1, sizeof *c);
    if (!c) return PG_ENOMEM;
    c->n_vocab = n_vocab;
    c->n_steps = n_steps;
    c->greedy = greedy != 0;
    c->n_bias = n_bias;
    for (int32_t i = 0; i < n_steps; i++) {
        c->steps[i] = steps[i];
        if (steps[i].kind == PG_CHAIN_PENALTIES && !penalties_neutral(&steps[i])) c->uses_window = 1;
    }
    c->bias_ids = malloc(((size_t)n_bias + 1) * sizeof *c->bias_ids);
    c->bias_values = malloc(((size_t)n_bias + 1) * sizeof *c->bias_values);
    if (!c->bias_ids || !c->bias_values)
        rc = PG_ENOMEM;
    else
        rc = copy_bias(c, bias_ids, bias_values, n_bias);
    if (rc) {
        pg_chain_free(c);
        return rc;
    }
    *out = c;
    return PG_OK;
}
