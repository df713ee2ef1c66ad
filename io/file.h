// file.h: opening the files io/ reads by position (checkpoint shards and
// manifests, `latest`, model files, binary datasets) so that a path which is
// not a regular file is refused instead of read. Opening a FIFO for reading
// blocks until a writer appears, so a FIFO left in place of a shard would
// hang `ckpt verify` and every resume; a directory opens fine and fails only
// at the first read. Here the open never blocks and the type is checked
// before any byte is read.
//
// Not here: the text readers (a FIFO or process substitution is a fine
// source of text lines: io/stream.h) and config files (io/config.h).
#ifndef LR_FILE_H
#define LR_FILE_H

#include <sys/stat.h> // struct stat

// Open `path` read-only (close-on-exec) without blocking and check with
// fstat that it is a regular file. Returns the descriptor (blocking mode
// restored; *st filled), or -1 with errno as set by open/fstat/fcntl, or
// FILE_NOT_REGULAR when it exists but is not a regular file (nothing left
// open; *st tells what it is: file_type_name). Cannot fail otherwise; records
// no error (callers word the message: a damaged checkpoint, a model file, ...).
#define FILE_NOT_REGULAR (-2)
int file_open_regular(const char *path, struct stat *st);

// "a directory", "a FIFO", "a socket", "a character device", "a block
// device", "a symbolic link", "a regular file" or "a special file", from
// st->st_mode. Cannot fail.
const char *file_type_name(const struct stat *st);

#endif
