/* GGUF string arrays (pygguf/gguf_strings.py): a checked scan of the inline (u64 length, bytes)
   records, then one copy of every payload into a contiguous buffer Python decodes at once.
   Status codes: PG_GGUF_STRINGS_OK = 0, _NOT_UTF8 = 1 (in bounds, some string is not strict
   UTF-8), _TRUNCATED = -1 (a length field or a string runs past the mapping), _BAD_ARGS = -2. */
#ifndef PYGGUF_API_GGUF_STRINGS_H
#define PYGGUF_API_GGUF_STRINGS_H

int pg_gguf_scan_strings(const uint8_t *buf, uint64_t size, uint64_t offset, uint64_t count,
                         uint64_t *byte_ends, uint64_t *char_ends, uint64_t *end);
int pg_gguf_gather_strings(const uint8_t *buf, uint64_t size, uint64_t offset, uint64_t count,
                           uint8_t *out, uint64_t out_size);

#endif
