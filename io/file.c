// file.c: file_open_regular and file_type_name of file.h.
#include "file.h"

#include <errno.h>  // errno
#include <fcntl.h>  // open, fcntl, O_NONBLOCK
#include <unistd.h> // close

int file_open_regular(const char *path, struct stat *st) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return -1;
  int flags;
  if (fstat(fd, st) != 0 || (flags = fcntl(fd, F_GETFL)) < 0 ||
      (S_ISREG(st->st_mode) && fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0)) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  if (!S_ISREG(st->st_mode)) {
    close(fd);
    return FILE_NOT_REGULAR;
  }
  return fd;
}

const char *file_type_name(const struct stat *st) {
  switch (st->st_mode & S_IFMT) {
  case S_IFREG: return "a regular file";
  case S_IFDIR: return "a directory";
  case S_IFIFO: return "a FIFO";
  case S_IFSOCK: return "a socket";
  case S_IFCHR: return "a character device";
  case S_IFBLK: return "a block device";
  case S_IFLNK: return "a symbolic link";
  default: return "a special file";
  }
}
