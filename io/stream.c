// stream.c: the line reader of stream.h.
//
// Two fixed buffers: `in` holds raw file bytes (compressed or not), `buf`
// holds decoded text. Lines are cut from buf in place (the '\n' becomes a
// NUL); when no '\n' is left, the unread tail is moved to the front and the
// decoder refills the rest. buf holds 2 * LR_LINE_MAX_BYTES, so a line that
// fits the limit always fits the buffer with room for one more decode step.
//
// gzip: zlib inflate (gzip wrapper only), concatenated members accepted.
// zstd: ZSTD_decompressStream, concatenated frames accepted; the frame
// checksum, when present, is verified by libzstd.
// Not here: random access, writing, other compressors.
#include "stream.h"

#include <errno.h>  // errno, EINTR
#include <fcntl.h>  // open, O_RDONLY
#include <stdlib.h> // calloc, malloc, free
#include <string.h> // memchr, memmove, memcpy, strerror, strdup
#include <unistd.h> // read, close
#include <zlib.h>   // inflate*, z_stream
#include <zstd.h>   // ZSTD_decompressStream, ZSTD_DCtx

#include "lr.h"

#define IN_BYTES ((size_t)256 << 10)
#define BUF_BYTES ((size_t)2 * LR_LINE_MAX_BYTES + 1)

struct lr_linestream {
  char *path;
  int fd;
  lr_compression comp;
  // raw input: in[in_pos .. in_len) unread; in_base = file offset of in[0]
  unsigned char *in;
  size_t in_len, in_pos;
  int64_t in_base;
  int in_eof;
  // decoders
  z_stream z;
  int z_ready;      // inflateInit2 succeeded
  int z_member_end; // the current gzip member ended (Z_STREAM_END)
  ZSTD_DCtx *zd;
  size_t zd_last; // last ZSTD_decompressStream hint (0 = at a frame boundary)
  int zd_started; // any zstd input consumed
  // decoded text: buf[start .. end) unread, no '\n' in buf[start .. scan)
  char *buf;
  size_t start, scan, end;
  int text_eof; // decoder has no more text
  int64_t lineno;
};

// ---------------------------------------------------------------------------
// raw input

// Refill `in` when it is used up. Sets in_eof at end of file. LR_ERR_IO.
static int in_refill(lr_linestream *s) {
  if (s->in_pos < s->in_len || s->in_eof) return LR_OK;
  s->in_base += (int64_t)s->in_len;
  s->in_len = s->in_pos = 0;
  for (;;) {
    ssize_t n = read(s->fd, s->in, IN_BYTES);
    if (n < 0 && errno == EINTR) continue;
    LR_CHECK(n >= 0, LR_ERR_IO, "read %s: %s", s->path, strerror(errno));
    if (n == 0) s->in_eof = 1;
    s->in_len = (size_t)n;
    return LR_OK;
  }
}

static int64_t in_offset(const lr_linestream *s) { return s->in_base + (int64_t)s->in_pos; }

// ---------------------------------------------------------------------------
// decoders: each writes up to `room` bytes of text to `out`, sets *got, and
// leaves *got == 0 only at the end of the text.

static int decode_plain(lr_linestream *s, char *out, size_t room, size_t *got) {
  *got = 0;
  LR_CALL(in_refill(s));
  size_t n = s->in_len - s->in_pos;
  if (n > room) n = room;
  memcpy(out, s->in + s->in_pos, n);
  s->in_pos += n;
  *got = n;
  return LR_OK;
}

static int decode_gzip(lr_linestream *s, char *out, size_t room, size_t *got) {
  *got = 0;
  for (;;) {
    LR_CALL(in_refill(s));
    int have_in = s->in_pos < s->in_len;
    if (s->z_member_end) {
      if (!have_in) return LR_OK;   // clean end after a complete member
      int rc = inflateReset(&s->z); // a further member follows
      if (rc != Z_OK) return LR_CORRUPT(s->path, in_offset(s), "gzip: cannot restart");
      s->z_member_end = 0;
    }
    s->z.next_in = s->in + s->in_pos;
    s->z.avail_in = (uInt)(s->in_len - s->in_pos);
    s->z.next_out = (Bytef *)out;
    s->z.avail_out = (uInt)room;
    int rc = inflate(&s->z, Z_NO_FLUSH);
    s->in_pos = s->in_len - s->z.avail_in;
    *got = room - s->z.avail_out;
    if (rc == Z_STREAM_END)
      s->z_member_end = 1;
    else if (rc == Z_MEM_ERROR)
      return lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "%s: gzip: out of memory", s->path);
    else if (rc != Z_OK && rc != Z_BUF_ERROR)
      return LR_CORRUPT(s->path, in_offset(s),
                        "gzip data error: %s (after text line %lld)\nHINT: the file is "
                        "damaged; re-download or re-compress it",
                        s->z.msg ? s->z.msg : "invalid data", (long long)s->lineno);
    if (*got > 0) return LR_OK;
    if (s->in_eof && s->in_pos == s->in_len && !s->z_member_end)
      return LR_CORRUPT(s->path, in_offset(s),
                        "gzip stream ends early (truncated file?) after text line %lld\n"
                        "HINT: re-download or re-compress it",
                        (long long)s->lineno);
  }
}

static int decode_zstd(lr_linestream *s, char *out, size_t room, size_t *got) {
  *got = 0;
  for (;;) {
    LR_CALL(in_refill(s));
    int have_in = s->in_pos < s->in_len;
    if (!have_in && s->in_eof && s->zd_last == 0) return LR_OK; // ends on a frame boundary
    ZSTD_inBuffer ib = {s->in, s->in_len, s->in_pos};
    ZSTD_outBuffer ob = {out, room, 0};
    size_t r = ZSTD_decompressStream(s->zd, &ob, &ib);
    s->in_pos = ib.pos;
    if (ZSTD_isError(r))
      return LR_CORRUPT(s->path, in_offset(s),
                        "zstd data error: %s (after text line %lld)\nHINT: the file is "
                        "damaged; re-download or re-compress it",
                        ZSTD_getErrorName(r), (long long)s->lineno);
    s->zd_last = r;
    *got = ob.pos;
    if (*got > 0) return LR_OK;
    if (!have_in && s->in_eof)
      return LR_CORRUPT(s->path, in_offset(s),
                        "zstd stream ends inside a frame (truncated file?) after text line "
                        "%lld\nHINT: re-download or re-compress it",
                        (long long)s->lineno);
  }
}

static int decode(lr_linestream *s, char *out, size_t room, size_t *got) {
  switch (s->comp) {
  case LR_COMP_GZIP: return decode_gzip(s, out, room, got);
  case LR_COMP_ZSTD: return decode_zstd(s, out, room, got);
  default: return decode_plain(s, out, room, got);
  }
}

// ---------------------------------------------------------------------------
// open / close

// Name a compression or file type we recognise but do not read, or NULL.
static const char *foreign_magic(const unsigned char *b, size_t n) {
  static const unsigned char xz[6] = {0xFD, '7', 'z', 'X', 'Z', 0x00};
  if (n >= 3 && b[0] == 'B' && b[1] == 'Z' && b[2] == 'h') return "bzip2-compressed";
  if (n >= 6 && !memcmp(b, xz, 6)) return "xz-compressed";
  if (n >= 4 && !memcmp(b, "PK\x03\x04", 4)) return "a zip archive";
  if (n >= 8 && !memcmp(b, "LRDATA01", 8)) return "a linrec binary dataset (use format binary)";
  return NULL;
}

int linestream_open(lr_linestream **out, const char *path) {
  *out = NULL;
  LR_CHECK(path && path[0], LR_ERR_ARG, "linestream_open: empty path");
  lr_linestream *s = calloc(1, sizeof *s);
  LR_CHECK(s, LR_ERR_NOMEM, "%s: out of memory", path);
  s->fd = -1;
  int rc = LR_OK;
  s->path = strdup(path);
  s->in = malloc(IN_BYTES);
  s->buf = malloc(BUF_BYTES);
  if (!s->path || !s->in || !s->buf) {
    rc = lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "%s: out of memory for read buffers", path);
    goto fail;
  }
  s->fd = open(path, O_RDONLY | O_CLOEXEC);
  if (s->fd < 0) {
    rc = lr_error(LR_ERR_IO, __FILE__, __LINE__, "cannot open %s: %s", path, strerror(errno));
    goto fail;
  }
  // Fill `in` with up to 8 bytes (or to EOF) to look at the magic.
  while (s->in_len < 8 && !s->in_eof) {
    ssize_t n = read(s->fd, s->in + s->in_len, IN_BYTES - s->in_len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      rc = lr_error(LR_ERR_IO, __FILE__, __LINE__, "read %s: %s", path, strerror(errno));
      goto fail;
    }
    if (n == 0) s->in_eof = 1;
    s->in_len += (size_t)n;
  }
  const unsigned char *b = s->in;
  const char *foreign = foreign_magic(b, s->in_len);
  if (foreign) {
    rc = lr_error(LR_ERR_DATA, __FILE__, __LINE__,
                  "%s:1: the file is %s, not text\nHINT: text inputs may be plain, gzip or "
                  "zstd compressed",
                  path, foreign);
    goto fail;
  }
  if (s->in_len >= 2 && b[0] == 0x1f && b[1] == 0x8b) {
    s->comp = LR_COMP_GZIP;
    if (inflateInit2(&s->z, 15 + 16) != Z_OK) {
      rc = lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "%s: cannot start zlib", path);
      goto fail;
    }
    s->z_ready = 1;
  } else if (s->in_len >= 4 && b[0] == 0x28 && b[1] == 0xb5 && b[2] == 0x2f && b[3] == 0xfd) {
    s->comp = LR_COMP_ZSTD;
    s->zd = ZSTD_createDCtx();
    if (!s->zd) {
      rc = lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "%s: cannot start zstd", path);
      goto fail;
    }
  }
  *out = s;
  return LR_OK;
fail:
  linestream_close(&s);
  return rc;
}

void linestream_close(lr_linestream **ps) {
  if (!ps || !*ps) return;
  lr_linestream *s = *ps;
  if (s->fd >= 0) close(s->fd);
  if (s->z_ready) inflateEnd(&s->z);
  ZSTD_freeDCtx(s->zd);
  free(s->in);
  free(s->buf);
  free(s->path);
  free(s);
  *ps = NULL;
}

int64_t linestream_lineno(const lr_linestream *s) { return s->lineno; }
lr_compression linestream_compression(const lr_linestream *s) { return s->comp; }

// ---------------------------------------------------------------------------
// lines

static void emit(lr_linestream *s, char **line, size_t *len, size_t line_end, size_t next) {
  char *p = s->buf + s->start;
  size_t n = line_end - s->start;
  s->buf[line_end] = '\0';
  if (n > 0 && p[n - 1] == '\r') p[--n] = '\0';
  s->lineno++;
  if (s->lineno == 1 && n >= 3 && !memcmp(p, "\xEF\xBB\xBF", 3)) p += 3, n -= 3;
  *line = p;
  *len = n;
  s->start = s->scan = next;
}

// A NUL byte would silently cut the line short for every string function
// after us: LR_ERR_DATA naming the line and the byte (*line reset).
static int check_nul(lr_linestream *s, char **line, size_t *len) {
  const char *nul = memchr(*line, '\0', *len);
  if (!nul) return LR_OK;
  long long at = (long long)(nul - *line) + 1;
  *line = NULL;
  *len = 0;
  return lr_error(LR_ERR_DATA, __FILE__, __LINE__,
                  "%s:%lld: NUL byte at byte %lld of the line (binary data in a text file?)",
                  s->path, (long long)s->lineno, at);
}

int linestream_next(lr_linestream *s, char **line, size_t *len) {
  *line = NULL;
  *len = 0;
  for (;;) {
    char *nl = memchr(s->buf + s->scan, '\n', s->end - s->scan);
    size_t pending = (nl ? (size_t)(nl - s->buf) : s->end) - s->start;
    LR_CHECK(pending <= LR_LINE_MAX_BYTES, LR_ERR_DATA,
             "%s:%lld: line longer than %d bytes (is this really a text data file?)", s->path,
             (long long)(s->lineno + 1), LR_LINE_MAX_BYTES);
    if (nl) {
      size_t at = (size_t)(nl - s->buf);
      emit(s, line, len, at, at + 1);
      return check_nul(s, line, len);
    }
    s->scan = s->end;
    if (s->text_eof) {
      if (s->start == s->end) return LR_OK; // end of file
      emit(s, line, len, s->end, s->end);   // last line without '\n'
      return check_nul(s, line, len);
    }
    if (s->start > 0) {
      memmove(s->buf, s->buf + s->start, s->end - s->start);
      s->end -= s->start;
      s->scan -= s->start;
      s->start = 0;
    }
    size_t got = 0;
    // room keeps one byte for the NUL of a last line without '\n'
    LR_CALL(decode(s, s->buf + s->end, BUF_BYTES - 1 - s->end, &got));
    if (got == 0) s->text_eof = 1;
    s->end += got;
  }
}
