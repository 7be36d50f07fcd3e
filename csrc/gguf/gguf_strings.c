/* GGUF string arrays: `count` records (u64 little-endian length + that many bytes) from
 * buf[offset], inside a mapping of `size` bytes. Every length is checked against the bytes left
 * before it is used (subtraction only, so no sum can overflow): a hostile file gets a status,
 * never a read past the mapping. Python turns any failure into the reference path's GGUFError. */
#include <stdint.h>
#include <stddef.h>
#include <string.h>

#include "api/gguf_strings.h"

enum { OK = 0, NOT_UTF8 = 1, TRUNCATED = -1, BAD_ARGS = -2 };

static inline uint64_t read_u64_le(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* Code points in s[0, n) when it is well-formed UTF-8 as Python's strict decoder defines it
 * (Unicode table 3-7: no overlongs, no surrogates, nothing past U+10FFFF); -1 otherwise. */
static int64_t utf8_code_points(const uint8_t *s, uint64_t n) {
    int64_t points = 0;
    uint64_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) { i++; points++; continue; }
        uint64_t len;
        uint8_t lo = 0x80, hi = 0xBF;                  /* range of the second byte */
        if (c >= 0xC2 && c <= 0xDF) len = 2;
        else if (c == 0xE0) { len = 3; lo = 0xA0; }
        else if (c >= 0xE1 && c <= 0xEC) len = 3;
        else if (c == 0xED) { len = 3; hi = 0x9F; }    /* U+D800.. are surrogates */
        else if (c >= 0xEE && c <= 0xEF) len = 3;
        else if (c == 0xF0) { len = 4; lo = 0x90; }
        else if (c >= 0xF1 && c <= 0xF3) len = 4;
        else if (c == 0xF4) { len = 4; hi = 0x8F; }    /* nothing past U+10FFFF */
        else return -1;
        if (n - i < len || s[i + 1] < lo || s[i + 1] > hi) return -1;
        for (uint64_t k = 2; k < len; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF) return -1;
        i += len;
        points++;
    }
    return points;
}

/* (count records) -> byte_ends[i], char_ends[i]: payload bytes / code points of strings 0..i;
 * *end: the offset just past the last record. One pass, each length checked before its bytes. */
int pg_gguf_scan_strings(const uint8_t *buf, uint64_t size, uint64_t offset, uint64_t count,
                         uint64_t *byte_ends, uint64_t *char_ends, uint64_t *end) {
    if (!buf || offset > size || (count && (!byte_ends || !char_ends)) || !end) return BAD_ARGS;
    uint64_t pos = offset, bytes = 0, chars = 0;
    int status = OK;
    for (uint64_t j = 0; j < count; j++) {
        if (size - pos < 8) return TRUNCATED;
        uint64_t length = read_u64_le(buf + pos);
        pos += 8;
        if (length > size - pos) return TRUNCATED;
        if (status == OK) {
            int64_t points = utf8_code_points(buf + pos, length);
            if (points < 0) status = NOT_UTF8;        /* keep scanning: bounds still decide */
            else chars += (uint64_t)points;
        }
        pos += length;
        bytes += length;
        byte_ends[j] = bytes;
        char_ends[j] = chars;
    }
    *end = pos;
    return status;
}

/* (count records) -> out: their payloads back to back. Re-checks every bound itself rather than
 * trusting an earlier scan, and that the payloads fit in out_size. */
int pg_gguf_gather_strings(const uint8_t *buf, uint64_t size, uint64_t offset, uint64_t count,
                           uint8_t *out, uint64_t out_size) {
    if (!buf || offset > size || (out_size && !out)) return BAD_ARGS;
    uint64_t pos = offset, used = 0;
    for (uint64_t j = 0; j < count; j++) {
        if (size - pos < 8) return TRUNCATED;
        uint64_t length = read_u64_le(buf + pos);
        pos += 8;
        if (length > size - pos) return TRUNCATED;
        if (length > out_size - used) return BAD_ARGS;
        memcpy(out + used, buf + pos, length);
        used += length;
        pos += length;
    }
    return OK;
}
