/* Merge loop shared by the BPE and SentencePiece tokenizers (pygguf/tokenizer/native.py). */
#ifndef PYGGUF_API_BPE_H
#define PYGGUF_API_BPE_H

typedef struct pg_merge_table pg_merge_table;

pg_merge_table *pg_merge_table_new(int64_t n_pairs, const int32_t *left, const int32_t *right,
                                   const int32_t *priority, const int32_t *result);
void pg_merge_table_free(pg_merge_table *table);
int64_t pg_merge_apply(const pg_merge_table *table, int32_t *sym, int32_t *start, int64_t n);

#endif
