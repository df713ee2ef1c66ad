// stream.h: line-by-line reading of a text file that is plain, gzip or zstd
// compressed (detected by its first bytes, not by its name), through fixed
// buffers: memory stays O(LR_LINE_MAX_BYTES) whatever the file size.
//
// Deliberately not here: parsing of fields (readers.c), seeking, writing.
#ifndef LR_STREAM_H
#define LR_STREAM_H

#include <stddef.h> // size_t
#include <stdint.h> // int64_t

// Longest accepted line (bytes, without the line end). Longer => LR_ERR_DATA.
#define LR_LINE_MAX_BYTES (1 << 20)

typedef enum { LR_COMP_PLAIN = 0, LR_COMP_GZIP, LR_COMP_ZSTD } lr_compression;

typedef struct lr_linestream lr_linestream; // opaque: owns the fd, decoder and buffers

// Open `path` and detect its compression. *out = the stream, or NULL on
// failure. Errors: LR_ERR_IO "cannot open <path>: <strerror>", LR_ERR_DATA
// for a compression we do not read (bzip2, xz, zip) or a linrec binary
// dataset given as text, LR_ERR_NOMEM.
int linestream_open(lr_linestream **out, const char *path);

// The next line, NUL-terminated, without its "\n" or "\r\n" (a UTF-8 byte
// order mark at the start of the file is dropped too). *line points into the
// stream's buffer and stays valid until the next call; *line == NULL at the
// end of the file. A last line without "\n" is still returned.
// Errors: LR_ERR_IO (read failed), LR_ERR_CORRUPT (damaged or truncated
// gzip/zstd data, with the compressed byte offset), LR_ERR_DATA (line longer
// than LR_LINE_MAX_BYTES, or holding a NUL byte: "path:line: NUL byte at
// byte k of the line"). On error *line = NULL.
int linestream_next(lr_linestream *s, char **line, size_t *len);

// Number of the line last returned by linestream_next (1-based; 0 before
// the first). Cannot fail.
int64_t linestream_lineno(const lr_linestream *s);

// Compression detected at open. Cannot fail.
lr_compression linestream_compression(const lr_linestream *s);

// Close and free; *s = NULL. Accepts NULL and *s == NULL.
void linestream_close(lr_linestream **s);

#endif
