package sysctl

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultHostDir is the one directory every host-mode run of this machine
// shares: it holds the host lock and, unless a run is told otherwise, the
// journal. /run is cleared at boot, like the values a journal records.
const DefaultHostDir = "/run/closeload"

// hostLockName is the lock file in the host directory.
const hostLockName = "host.lock"

// hostDir is DefaultHostDir except in tests, which must not contend with
// real runs (export_test.go).
var hostDir = DefaultHostDir

// ErrHostBusy: another live host-mode run holds the host lock. Two runs
// changing the host's sysctls at once would interleave their changes and
// leave the host changed.
var ErrHostBusy = errors.New("another host-mode run is changing this host's sysctls")

// LockPath is the host lock's file: a host-mode run holds an exclusive
// flock on it from before it reads the old values until they are back.
func LockPath() string { return filepath.Join(hostDir, hostLockName) }

// hostHolder is what the lock file says about the run that holds (or last
// held) the lock. It stays in the file until that run's journal is
// restored, so a run after a crash finds the journal it must not ignore,
// wherever it was written.
type hostHolder struct {
	PID     int       `json:"pid"`
	Journal string    `json:"journal"`
	Since   time.Time `json:"since"`
}

// String names the holder for an error message.
func (h hostHolder) String() string {
	pid := "pid unknown"
	if h.PID > 0 {
		pid = "pid " + strconv.Itoa(h.PID)
	}
	if h.Journal == "" {
		return pid
	}
	return pid + ", journal " + h.Journal
}

// parseHostHolder reads a lock file's contents; an empty or damaged one
// names nobody.
func parseHostHolder(r io.Reader) hostHolder {
	var h hostHolder
	b, err := io.ReadAll(io.LimitReader(r, 64<<10))
	if err != nil || json.Unmarshal(b, &h) != nil || h.PID < 0 {
		return hostHolder{}
	}
	return h
}

// hostLock is a held host lock.
type hostLock struct {
	f    *os.File
	path string
}

// lockAttempts bounds how often lockHost retries when the lock file it
// locked was removed meanwhile by a holder that released it.
const lockAttempts = 10

// lockHost takes the host lock without waiting. It returns the lock and
// what the file says about the previous holder (a run that ended; its
// journal may still be there). A live holder gives ErrHostBusy naming its
// pid and journal.
func lockHost() (*hostLock, hostHolder, error) {
	path := LockPath()
	for range lockAttempts {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, hostHolder{}, fmt.Errorf("host lock: %w", err)
		}
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if errors.Is(err, fs.ErrNotExist) {
			continue // the directory went with a released lock
		}
		if err != nil {
			return nil, hostHolder{}, fmt.Errorf("host lock: %w", err)
		}
		for {
			err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
			if !errors.Is(err, unix.EINTR) {
				break
			}
		}
		if err != nil {
			defer f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				h := busyHolder(f)
				return nil, h, fmt.Errorf("%w: %s holds %s", ErrHostBusy, h, path)
			}
			return nil, hostHolder{}, fmt.Errorf("host lock %s: %w", path, err)
		}
		// A holder that released the lock removes the file: the one
		// locked here must still be the one at path, or it locks nothing.
		fst, ferr := f.Stat()
		pst, perr := os.Stat(path)
		if ferr == nil && perr == nil && os.SameFile(fst, pst) {
			return &hostLock{f: f, path: path}, parseHostHolder(f), nil
		}
		f.Close()
	}
	return nil, hostHolder{}, fmt.Errorf("host lock %s: replaced %d times while being taken", path, lockAttempts)
}

// holderWait bounds how long a refused run waits for the holder, which
// writes its name right after it takes the lock, to appear in the file.
const holderWait = time.Second

// busyHolder reads the live holder from the lock file f, giving it a
// moment when it has only just taken the lock.
func busyHolder(f *os.File) hostHolder {
	deadline := time.Now().Add(holderWait)
	for {
		h := parseHostHolder(io.NewSectionReader(f, 0, 64<<10))
		if h.PID > 0 || time.Now().After(deadline) {
			return h
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// setHolder records the holder in the lock file, durably.
func (l *hostLock) setHolder(h hostHolder) error {
	var data []byte
	if h != (hostHolder{}) {
		var err error
		if data, err = json.Marshal(h); err != nil {
			return err
		}
		data = append(data, '\n')
	}
	if err := l.f.Truncate(0); err != nil {
		return fmt.Errorf("host lock: %w", err)
	}
	if _, err := l.f.WriteAt(data, 0); err != nil {
		return fmt.Errorf("host lock: %w", err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("host lock: %w", err)
	}
	return nil
}

// unlock releases the lock (closing the file drops the flock). A lock
// file that names no holder any more (setHolder(hostHolder{}): nothing is
// left to restore) is removed first, with its directory if that is empty,
// so that host mode leaves nothing behind; one that names a holder stays:
// it leads the next run to a journal still to be restored.
func (l *hostLock) unlock() {
	if l == nil || l.f == nil {
		return
	}
	if fst, err := l.f.Stat(); err == nil && fst.Size() == 0 {
		if pst, err := os.Stat(l.path); err == nil && os.SameFile(fst, pst) {
			_ = os.Remove(l.path)
			_ = os.Remove(filepath.Dir(l.path)) // only if empty
		}
	}
	l.f.Close()
	l.f = nil
}

// leftoverJournal is the journal a previous holder left, "" when there is
// none: the holder restored it (and cleared the file), or it is gone.
func leftoverJournal(h hostHolder, more ...string) string {
	for _, p := range append([]string{h.Journal}, more...) {
		if p == "" {
			continue
		}
		if _, err := os.Lstat(p); err == nil || !errors.Is(err, fs.ErrNotExist) {
			return p
		}
	}
	return ""
}

// PendingJournal names the journal a host-mode run left to restore on this
// machine, "" when there is none: the one the host lock file names (a run
// that is alive, or one that died before its restore succeeded), else
// DefaultJournalPath if it exists. pid is the run that wrote it, 0 when
// unknown. It takes no lock and changes nothing, so that
// 'closeload sysctl restore' without an argument can find what to restore
// and a status line can say the host is changed.
func PendingJournal() (path string, pid int) {
	var h hostHolder
	if f, err := os.Open(LockPath()); err == nil {
		h = parseHostHolder(f)
		f.Close()
	}
	if p := leftoverJournal(h); p != "" {
		return p, h.PID
	}
	return leftoverJournal(hostHolder{}, filepath.Join(hostDir, filepath.Base(DefaultJournalPath))), 0
}
