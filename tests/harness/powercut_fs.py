#!/usr/bin/python3
"""A filesystem whose power can be cut: a FUSE passthrough over a backing directory that models a disk cache.

    powercut_fs.py BACKING MOUNTPOINT [CUT_AT]   (foreground; root mounts without fusermount)

`kill -USR1 PID` cuts the power: unsynced data and directory changes are thrown away, leaving BACKING as a
disk would be after a power loss; the mount is detached and the process exits. With CUT_AT, the CUT_AT-th
change (a create, mkdir, symlink, link, unlink, rmdir, rename, fsync or directory fsync; not writes, as a cut
among them loses what one at the next fsync does) cuts the power before it is made, and every call fails
from then on (the mount stays, so that programs still running cannot write under it) until SIGUSR1 detaches
it. SIGTERM, SIGINT or an unmount is a clean shutdown: everything is written, as by `sync`.

The model, and where it is simpler than a disk:
- File data written or truncated since the file's last fsync/fdatasync is held in memory (the whole file, by
  its backing inode) and served to reads, so running programs see it; fsync writes it to BACKING. A cut loses
  all of it: a file reads as it was at its last fsync, never half-written, never with stale blocks.
- Directory changes (create, mkdir, symlink, link, rename, unlink, rmdir) reach BACKING at once and are
  journaled; an fsync of the directory a change was made in makes it durable (for a rename: the directory it
  moved into). A cut undoes the others, newest first. POSIX-strict: fsync of a file does not make its own
  directory entry durable (ext4 would), and no fsync makes another directory's changes durable.
- Undo goes by name and inode: an undo that no longer matches (a durable later rename moved the entry away)
  is skipped, as the disk keeps the later state. Undoing a mkdir removes what the directory holds (on a disk
  those would be orphans).
- Metadata (chmod, chown, times) is durable at once. Removed entries wait in BACKING/.powercut-trash (hidden)
  until shutdown, so that their inodes stay alive for an undo.
"""
import ctypes
import errno
import os
import shutil
import signal
import stat
import sys
import threading

try:
    from fusepy import FUSE, FuseOSError, Operations  # Debian's python3-fusepy
except ImportError:
    from fuse import FUSE, FuseOSError, Operations

TRASH = ".powercut-trash"
COUNTED = {"create", "mkdir", "symlink", "link", "unlink", "rmdir", "rename", "fsync", "fsyncdir"}
MNT_DETACH = 2


class Dirty:
    """A file's content as programs see it, and the lowest offset changed since its last fsync."""

    def __init__(self, fd):
        self.fd = os.open(f"/proc/self/fd/{fd}", os.O_RDWR)  # keeps the inode, even unlinked, for the flush
        size = os.fstat(self.fd).st_size
        self.data = bytearray(os.pread(self.fd, size, 0)) if size else bytearray()
        self.low = len(self.data)


class PowerCutFS(Operations):
    def __init__(self, backing, cut_at):
        self.root = os.path.realpath(backing)
        self.trash = os.path.join(self.root, TRASH)
        os.makedirs(self.trash, exist_ok=True)
        self.mutex = threading.RLock()
        self.dirty = {}  # backing inode -> Dirty
        self.files = {}  # open handle -> (flags, backing inode)
        self.journal = []  # directory changes not yet durable, oldest first
        self.buried = 0
        self.off = False
        self.changes = 0
        self.cut_at = cut_at
        self.mountpoint = None

    def __call__(self, op, *args):
        with self.mutex:  # one call at a time: the journal's order is the order of the changes
            if self.off:
                raise FuseOSError(errno.EIO)
            if op in COUNTED:
                self.changes += 1
                if self.changes == self.cut_at:
                    self.cut(f"before change {self.changes}: {op} {args[0]}")
                    raise FuseOSError(errno.EIO)
            return super().__call__(op, *args)

    def _full(self, path):
        if path.split("/")[1:2] == [TRASH]:
            raise FuseOSError(errno.ENOENT)
        return self.root + path

    def _where(self, full):
        """(inode of the parent directory, name) of a backing path."""
        return os.lstat(os.path.dirname(full)).st_ino, os.path.basename(full)

    def _bury(self, full):
        """Moves a backing entry to the trash instead of removing it; returns its name there."""
        self.buried += 1
        name = str(self.buried)
        os.rename(full, os.path.join(self.trash, name))
        return name

    # Directory changes, journaled.

    def _new(self, full):
        parent, name = self._where(full)
        self.journal.append(("new", parent, parent, name, os.lstat(full).st_ino))

    def create(self, path, mode):
        full = self._full(path)
        fd = os.open(full, os.O_RDWR | os.O_CREAT | os.O_EXCL, mode)
        self._new(full)
        return self._opened(fd, os.O_RDWR)

    def mkdir(self, path, mode):
        os.mkdir(self._full(path), mode)
        self._new(self._full(path))

    def symlink(self, target, source):
        os.symlink(source, self._full(target))
        self._new(self._full(target))

    def link(self, target, source):
        os.link(self._full(source), self._full(target))
        self._new(self._full(target))

    def unlink(self, path):
        full = self._full(path)
        if stat.S_ISDIR(os.lstat(full).st_mode):
            raise FuseOSError(errno.EISDIR)
        parent, name = self._where(full)
        self.journal.append(("gone", parent, parent, name, self._bury(full)))

    def rmdir(self, path):
        full = self._full(path)
        if not stat.S_ISDIR(os.lstat(full).st_mode):
            raise FuseOSError(errno.ENOTDIR)
        if os.listdir(full):
            raise FuseOSError(errno.ENOTEMPTY)
        parent, name = self._where(full)
        self.journal.append(("gone", parent, parent, name, self._bury(full)))

    def rename(self, old, new):
        src, dst = self._full(old), self._full(new)
        moving = os.lstat(src)
        replaced = None
        if os.path.lexists(dst):
            there = os.lstat(dst)
            if there.st_ino == moving.st_ino:
                return 0
            if stat.S_ISDIR(there.st_mode) != stat.S_ISDIR(moving.st_mode):
                raise FuseOSError(errno.EISDIR if stat.S_ISDIR(there.st_mode) else errno.ENOTDIR)
            if stat.S_ISDIR(there.st_mode) and os.listdir(dst):
                raise FuseOSError(errno.ENOTEMPTY)
            replaced = self._bury(dst)
        try:
            os.rename(src, dst)
        except OSError:
            if replaced:
                os.rename(os.path.join(self.trash, replaced), dst)
            raise
        (src_dir, src_name), (dst_dir, dst_name) = self._where(src), self._where(dst)
        self.journal.append(("moved", dst_dir, src_dir, src_name, dst_dir, dst_name, moving.st_ino, replaced))

    def fsyncdir(self, path, datasync, fh):
        synced = os.lstat(self._full(path)).st_ino
        self.journal = [entry for entry in self.journal if entry[1] != synced]
        return 0

    # File data, held until fsync.

    def _opened(self, fd, flags):
        self.files[fd] = (flags, os.fstat(fd).st_ino)
        return fd

    def _buffer(self, fd):
        ino = self.files[fd][1] if fd in self.files else os.fstat(fd).st_ino
        if ino not in self.dirty:
            self.dirty[ino] = Dirty(fd)
        return self.dirty[ino]

    def open(self, path, flags):
        writes = flags & os.O_ACCMODE != os.O_RDONLY
        fd = self._opened(os.open(self._full(path), os.O_RDWR if writes else os.O_RDONLY), flags)
        if flags & os.O_TRUNC:
            self.truncate(path, 0, fd)
        return fd

    def read(self, path, size, offset, fh):
        held = self.dirty.get(self.files[fh][1])
        return bytes(held.data[offset:offset + size]) if held else os.pread(fh, size, offset)

    def write(self, path, data, offset, fh):
        held = self._buffer(fh)
        if self.files[fh][0] & os.O_APPEND:
            offset = len(held.data)
        if offset > len(held.data):
            held.data.extend(bytes(offset - len(held.data)))
        held.data[offset:offset + len(data)] = data
        held.low = min(held.low, offset)
        return len(data)

    def truncate(self, path, length, fh=None):
        fd = fh if fh is not None else os.open(self._full(path), os.O_RDONLY)
        try:
            held = self._buffer(fd)
        finally:
            if fh is None:
                os.close(fd)
        if length < len(held.data):
            del held.data[length:]
        else:
            held.data.extend(bytes(length - len(held.data)))
        held.low = min(held.low, length)

    def _flush(self, ino):
        held = self.dirty.pop(ino, None)
        if held is None:
            return
        view = memoryview(held.data)
        at = held.low
        while at < len(held.data):
            at += os.pwrite(held.fd, view[at:], at)
        os.ftruncate(held.fd, len(held.data))
        os.close(held.fd)

    def fsync(self, path, datasync, fh):
        self._flush(self.files[fh][1])
        return 0

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        self.files.pop(fh, None)
        os.close(fh)

    # Plain passthrough.

    def getattr(self, path, fh=None):
        info = os.fstat(fh) if fh is not None else os.lstat(self._full(path))
        names = ("st_mode", "st_ino", "st_nlink", "st_uid", "st_gid", "st_size", "st_atime", "st_mtime",
                 "st_ctime", "st_blocks")
        attrs = {name: getattr(info, name) for name in names}
        held = self.dirty.get(info.st_ino)
        if held:
            attrs["st_size"] = len(held.data)
            attrs["st_blocks"] = (len(held.data) + 511) // 512
        return attrs

    def readdir(self, path, fh):
        names = [name for name in os.listdir(self._full(path)) if not (path == "/" and name == TRASH)]
        return [".", ".."] + names

    def readlink(self, path):
        return os.readlink(self._full(path))

    def access(self, path, amode):
        if not os.access(self._full(path), amode):
            raise FuseOSError(errno.EACCES)

    def chmod(self, path, mode):
        os.chmod(self._full(path), mode)

    def chown(self, path, uid, gid):
        os.lchown(self._full(path), uid, gid)

    def utimens(self, path, times=None):
        os.utime(self._full(path), times, follow_symlinks=False)

    def statfs(self, path):
        info = os.statvfs(self.root)
        names = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files", "f_flag",
                 "f_frsize", "f_namemax")
        return {name: getattr(info, name) for name in names}

    # Shutdown: clean (write everything) or a power cut (lose what was not synced).

    def destroy(self, path):
        print(f"powercut: clean shutdown after {self.changes} change(s)", file=sys.stderr)
        for ino in list(self.dirty):
            self._flush(ino)
        self.journal.clear()
        shutil.rmtree(self.trash, ignore_errors=True)

    def _directories(self):
        """Backing directory inode -> its path now (the trash left out)."""
        found = {}
        for here, subdirs, _ in os.walk(self.root):
            found[os.lstat(here).st_ino] = here
            if here == self.root and TRASH in subdirs:
                subdirs.remove(TRASH)
        return found

    def _undo(self, entry):
        dirs = self._directories()
        if entry[0] == "new":
            _, _, parent, name, ino = entry
            full = os.path.join(dirs.get(parent, "/nonexistent"), name)
            if parent in dirs and os.path.lexists(full) and os.lstat(full).st_ino == ino:
                shutil.rmtree(full) if stat.S_ISDIR(os.lstat(full).st_mode) else os.unlink(full)
                return True
        elif entry[0] == "gone":
            _, _, parent, name, buried = entry
            full = os.path.join(dirs.get(parent, "/nonexistent"), name)
            if parent in dirs and not os.path.lexists(full):
                os.rename(os.path.join(self.trash, buried), full)
                return True
        else:
            _, _, src_dir, src_name, dst_dir, dst_name, ino, replaced = entry
            if src_dir in dirs and dst_dir in dirs:
                src, dst = os.path.join(dirs[src_dir], src_name), os.path.join(dirs[dst_dir], dst_name)
                if os.path.lexists(dst) and os.lstat(dst).st_ino == ino and not os.path.lexists(src):
                    os.rename(dst, src)
                    if replaced:
                        os.rename(os.path.join(self.trash, replaced), dst)
                    return True
        return False

    def cut(self, when):
        """Rolls BACKING back to what a disk would keep; every call fails from now on. Stays mounted, so that
        programs still running cannot write into the directory under the mount."""
        with self.mutex:
            if self.off:
                return
            print(f"powercut: power cut {when}", file=sys.stderr)
            self.off = True
            for held in self.dirty.values():
                os.close(held.fd)
            self.dirty.clear()
            undone = 0
            for entry in reversed(self.journal):
                done = self._undo(entry)
                undone += done
                names = " -> ".join(str(part) for part in entry[3:6:2] if isinstance(part, str))
                print(f"powercut: {'undone' if done else 'no longer there'}: {entry[0]} {names}", file=sys.stderr)
            print(f"powercut: lost {len(self.journal)} directory change(s), {undone} undone", file=sys.stderr)
            shutil.rmtree(self.trash, ignore_errors=True)
            sys.stderr.flush()


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: powercut_fs.py BACKING MOUNTPOINT [CUT_AT]")
    fs = PowerCutFS(sys.argv[1], int(sys.argv[3]) if len(sys.argv) == 4 else 0)
    fs.mountpoint = os.path.realpath(sys.argv[2])
    # Blocked before any thread starts, so that only the waiting thread takes it.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})

    def wait_for_cut():
        signal.sigwait({signal.SIGUSR1})
        fs.cut(f"by signal after {fs.changes} change(s)")
        ctypes.CDLL(None, use_errno=True).umount2(fs.mountpoint.encode(), MNT_DETACH)
        os._exit(0)

    threading.Thread(target=wait_for_cut, daemon=True).start()
    FUSE(fs, fs.mountpoint, foreground=True, nothreads=True, big_writes=True, max_write=131072, fsname="powercut")


if __name__ == "__main__":
    main()
