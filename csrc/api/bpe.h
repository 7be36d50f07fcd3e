/* Merge loop shared by the BPE and SentencePiece tokenizers (pygguf/tokenizer/native.py). */
#ifndef PYGGUF_API_BPE_H
#define PYGGUF_API_BPE_H

typedef struct pg_merge_table pg_merge_table;

pg_merge_table *pg_merge_table_new(int64_t n_pairs, const int32_t *left, const int32_t *right,
                                   const int32_t *priority, const int32_t *result);
void pg_merge_table_free(pg_merge_table *table);
int64_t pg_merge_apply(const pg_merge_table *table, int32_t *sym, int32_t *start, int64_t n);

/* SentencePiece's table from the vocabulary (tokenizer/spm_table.c): texts holds every token's
   UTF-8 text back to back (texts_size bytes), n_chars[i] token i's length in characters,
   priority[i] its merge priority (lower first). Characters that are not tokens but are half of a
   pair get symbols n_tokens + k; their code points go to extra[k], k < *n_extra <= max_extra.
   NULL on malformed input, too little room in extra, or no memory. */
pg_merge_table *pg_spm_table_new(int64_t n_tokens, const uint8_t *texts, int64_t texts_size,
                                 const int32_t *n_chars, const int32_t *priority,
                                 uint32_t *extra, int64_t max_extra, int64_t *n_extra);

#endif
