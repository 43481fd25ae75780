package sysctl

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/closeload/closeload/kernel"
)

// Sentinel errors of host mode.
var (
	ErrNotRoot        = errors.New("host mode needs root")
	ErrJournalExists  = errors.New("a sysctl journal already exists")
	ErrJournalDamaged = errors.New("damaged sysctl journal")
	ErrJournalBoot    = errors.New("sysctl journal belongs to another boot")
	ErrJournalNetns   = errors.New("sysctl journal belongs to another network namespace")
	ErrChangedSince   = errors.New("sysctl changed by someone else since closeload set it")
	ErrJournalInUse   = errors.New("a host-mode run is still running")
)

// JournalVersion is bumped when the journal format changes meaning.
const JournalVersion = 1

// DefaultJournalPath is where host mode journals old values unless told
// otherwise: one journal for the host, in the directory of the host lock.
const DefaultJournalPath = DefaultHostDir + "/host-sysctl.json"

// geteuid is replaced in tests that run host mode against a fake /proc.
var geteuid = os.Geteuid

// JournalEntry is one key closeload changed: the value it found (Old) and
// the one it wrote (New).
type JournalEntry struct {
	Key string `json:"key"`
	Old string `json:"old"`
	New string `json:"new"`
}

// Journal records, before anything changes, the host values a host-mode run
// is about to overwrite, so they come back on exit, on a signal, on a panic
// (Restore) and after kill -9 (RestoreJournal from another process).
type Journal struct {
	Version int `json:"version"`
	// BootID is /proc/sys/kernel/random/boot_id when the journal was
	// written: after a reboot the kernel has reset the values itself, and
	// restoring would overwrite settings made since.
	BootID string `json:"boot_id"`
	// Netns identifies the network namespace ("net:[4026531840]"): the
	// values belong to it and to no other.
	Netns string `json:"netns"`
	PID   int    `json:"pid"`
	// Exe is the binary of the writing process, for whoever reads the
	// journal; whether that run is alive is told by the host lock.
	Exe      string         `json:"exe"`
	Created  time.Time      `json:"created"`
	ProcRoot string         `json:"proc_root"`
	Entries  []JournalEntry `json:"entries"`
	// Checksum is the SHA-256 of the journal with this field empty; a
	// journal that does not match is damaged and restores nothing.
	Checksum string `json:"checksum"`

	path string
	lock *hostLock
	mu   sync.Mutex
	// done is set once the values are back (or left to whoever changed
	// them since) and the journal is gone; restoreErr is that outcome.
	done       bool
	restoreErr error
	stopSig    func()
}

// Path is the journal's file.
func (j *Journal) Path() string { return j.path }

// RestoreSignals are the signals on which a host-mode run puts the host's
// values back at once. Once a Journal listens for them they no longer end
// the process by default, so the caller must stop its run on each of them
// too (signal.NotifyContext(ctx, RestoreSignals()...)).
func RestoreSignals() []os.Signal {
	return []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT}
}

// ApplyHost changes the host's sysctls for a host-mode run: it checks for
// root, takes the host lock (LockPath; held until Restore, so no other
// host-mode run of this machine can change the host meanwhile), refuses
// while a journal an earlier run left is still to be restored, reads the
// old values, writes the journal and fsyncs it, and only then applies the
// values (all or nothing). The journal restores the values by itself on
// every signal of RestoreSignals; the caller must defer j.Restore().
// journalPath "" is DefaultJournalPath, the one journal of the host.
func ApplyHost(procRoot, journalPath string, as []Assignment) (*Journal, error) {
	if procRoot == "" {
		procRoot = DefaultProcRoot
	}
	if journalPath == "" {
		journalPath = DefaultJournalPath
	}
	if abs, err := filepath.Abs(journalPath); err == nil {
		journalPath = abs
	}
	if geteuid() != 0 {
		return nil, fmt.Errorf("%w: host mode changes the whole host's settings; run as root, or compare settings in an isolated network namespace instead (no root needed)", ErrNotRoot)
	}
	lock, prev, err := lockHost()
	if err != nil {
		if errors.Is(err, ErrHostBusy) {
			return nil, fmt.Errorf("%w; two host-mode runs at once would interleave their changes and leave the host changed: wait for it to end, or stop it with SIGTERM (it puts its values back)", err)
		}
		return nil, err
	}
	if left := leftoverJournal(prev, journalPath); left != "" {
		lock.unlock()
		who := "a host-mode run"
		if prev.PID > 0 && prev.Journal == left {
			who = fmt.Sprintf("host-mode run pid %d", prev.PID)
		}
		return nil, fmt.Errorf("%w: %s: %s ended without restoring, so the host may still have its changes; run 'closeload sysctl restore %s' first", ErrJournalExists, left, who, left)
	}
	// Name this run in the lock file at once: a run refused meanwhile
	// reads who holds the host. Every failure below clears it again,
	// unless a journal was left that still has to be restored.
	if err := lock.setHolder(hostHolder{PID: os.Getpid(), Journal: journalPath, Since: time.Now().UTC()}); err != nil {
		lock.unlock()
		return nil, err
	}
	release := func() {
		if leftoverJournal(hostHolder{}, journalPath) == "" {
			_ = lock.setHolder(hostHolder{})
		}
		lock.unlock()
	}
	j, err := startJournal(procRoot, journalPath, as)
	if err != nil {
		release()
		return nil, err
	}
	if err := Apply(procRoot, as); err != nil {
		// Apply put back what it wrote; the journal goes only once every
		// key reads its old value again, else it stays for a restore.
		defer release()
		if rerr := restoreEntries(procRoot, journalPath, j.Entries); rerr != nil {
			return nil, fmt.Errorf("%w; afterwards: %w", err, rerr)
		}
		return nil, err
	}
	j.lock = lock
	j.RestoreOnSignal()
	return j, nil
}

// startJournal reads the old values and writes the journal durably.
func startJournal(procRoot, journalPath string, as []Assignment) (*Journal, error) {
	j := &Journal{
		Version:  JournalVersion,
		BootID:   kernel.NewFS(procRoot).BootID(),
		Netns:    kernel.NewFS(procRoot).NetnsID(),
		PID:      os.Getpid(),
		Exe:      selfExe(),
		Created:  time.Now().UTC(),
		ProcRoot: procRoot,
		path:     journalPath,
	}
	if j.BootID == "" {
		return nil, fmt.Errorf("host mode: cannot read %s, which the journal needs to tell a reboot from a crash", filepath.Join(procRoot, "sys/kernel/random/boot_id"))
	}
	for _, a := range as {
		old, err := Read(procRoot, a.Key)
		if err != nil {
			return nil, err
		}
		j.Entries = append(j.Entries, JournalEntry{Key: a.Key, Old: old, New: a.Value})
	}
	if err := j.write(); err != nil {
		return nil, err
	}
	return j, nil
}

// Restore puts back the old values, removes the journal and releases the
// host lock. It may be called more than once (deferred, from a signal,
// from a panic handler): once it has succeeded, later calls return its
// result; after a failure (a key that could not be written) the journal
// stays, and a later call tries again. A key someone else changed since
// closeload set it is left alone and named in the error (ErrChangedSince).
func (j *Journal) Restore() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.done {
		return j.restoreErr
	}
	err := restoreEntries(j.ProcRoot, j.path, j.Entries)
	if err != nil && !errors.Is(err, ErrChangedSince) {
		return err // journal kept, and named in the lock file
	}
	j.done, j.restoreErr = true, err
	if j.stopSig != nil {
		j.stopSig()
	}
	if j.lock != nil {
		if cerr := j.lock.setHolder(hostHolder{}); cerr != nil && err == nil {
			err = cerr
		}
		j.lock.unlock()
	}
	return err
}

// RestoreOnSignal restores the values as soon as a signal of
// RestoreSignals arrives, without waiting for the run to wind down; it
// does not end the process (the caller's own signal handling does).
// Until then it also keeps SIGPIPE from killing the process: a run whose
// standard output is a closed pipe (closeload ... | head) gets EPIPE from
// its writes and ends, and restores, like any other. ApplyHost calls it;
// further calls do nothing. A successful Restore stops it.
func (j *Journal) RestoreOnSignal() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.stopSig != nil || j.done {
		return
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, RestoreSignals()...)
	pipe := make(chan os.Signal, 1)
	signal.Notify(pipe, syscall.SIGPIPE)
	done := make(chan struct{})
	var once sync.Once
	j.stopSig = func() { once.Do(func() { signal.Stop(ch); signal.Stop(pipe); close(done) }) }
	go func() {
		for {
			select {
			case <-ch:
				_ = j.Restore()
				return
			case <-pipe: // the write that raised it fails with EPIPE
			case <-done:
				return
			}
		}
	}()
}

// RestoreJournal restores the values a journal recorded, for a run that
// could not do it itself (kill -9, power cut of the process). It takes the
// host lock for the time of the restore, so it refuses (ErrJournalInUse)
// while a host-mode run is alive: that run restores by itself. It refuses,
// changing nothing, when the journal is damaged, from another boot or from
// another network namespace.
func RestoreJournal(path, procRoot string) error {
	if procRoot == "" {
		procRoot = DefaultProcRoot
	}
	j, err := LoadJournal(path)
	if err != nil {
		return err
	}
	if cur := kernel.NewFS(procRoot).BootID(); j.BootID != cur {
		return fmt.Errorf("%w: %s was written during boot %s, this is boot %s: the reboot already reset these values, so nothing was restored; delete the journal", ErrJournalBoot, path, j.BootID, cur)
	}
	lock, holder, err := lockHost()
	if err != nil {
		if errors.Is(err, ErrHostBusy) {
			return fmt.Errorf("%w (%s): it restores its values when it ends; stop it with SIGTERM rather than restoring under it; nothing was restored", ErrJournalInUse, holder)
		}
		return err
	}
	defer lock.unlock()
	if cur := kernel.NewFS(procRoot).NetnsID(); j.Netns != cur {
		return fmt.Errorf("%w: %s records namespace %s, this process is in %s; nothing was restored (run the restore in that namespace)", ErrJournalNetns, path, j.Netns, cur)
	}
	err = restoreEntries(procRoot, path, j.Entries)
	if err == nil || errors.Is(err, ErrChangedSince) {
		if abs, aerr := filepath.Abs(path); holder.Journal == "" || (aerr == nil && abs == holder.Journal) {
			if cerr := lock.setHolder(hostHolder{}); cerr != nil && err == nil {
				err = cerr
			}
		}
	}
	return err
}

// LoadJournal reads and checks a journal without acting on it.
func LoadJournal(path string) (*Journal, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var j Journal
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return nil, fmt.Errorf("%w: %s: %v; nothing was restored", ErrJournalDamaged, path, err)
	}
	if j.Version != JournalVersion {
		return nil, fmt.Errorf("%w: %s: version %d, this closeload reads %d; nothing was restored", ErrJournalDamaged, path, j.Version, JournalVersion)
	}
	sum, err := j.checksum()
	if err != nil || sum != j.Checksum {
		return nil, fmt.Errorf("%w: %s: checksum does not match its contents (edited or torn); nothing was restored", ErrJournalDamaged, path)
	}
	if j.BootID == "" || len(j.Entries) == 0 {
		return nil, fmt.Errorf("%w: %s: no boot id or no entries; nothing was restored", ErrJournalDamaged, path)
	}
	for _, e := range j.Entries {
		if err := CheckName(e.Key, true); err != nil {
			return nil, fmt.Errorf("%w: %s: %v; nothing was restored", ErrJournalDamaged, path, err)
		}
		if _, known := byName[e.Key]; known {
			if _, err := NormalizeValue(e.Key, e.Old); err != nil {
				return nil, fmt.Errorf("%w: %s: %v; nothing was restored", ErrJournalDamaged, path, err)
			}
		}
	}
	j.path = path
	return &j, nil
}

// restoreEntries writes back old values in reverse order. A key whose value
// is neither what closeload wrote nor the old one was changed by someone
// else and is left alone. The journal is removed unless a write failed.
func restoreEntries(procRoot, path string, entries []JournalEntry) error {
	var failed, changed []string
	var errs []error
	for i := len(entries) - 1; i >= 0; i-- {
		e := entries[i]
		cur, err := Read(procRoot, e.Key)
		if err != nil {
			errs = append(errs, err)
			failed = append(failed, e.Key)
			continue
		}
		switch cur {
		case e.Old:
			continue
		case e.New:
			if err := write(procRoot, e.Key, e.Old); err != nil {
				errs = append(errs, err)
				failed = append(failed, e.Key)
			}
		default:
			changed = append(changed, fmt.Sprintf("%s is %q (closeload set %q, found %q)", e.Key, cur, e.New, e.Old))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("restore %s: %s not restored, journal kept: %w", path, strings.Join(failed, ", "), errors.Join(errs...))
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("restore: values restored but journal not removed: %w", err)
	}
	if len(changed) > 0 {
		return fmt.Errorf("%w, left as it is: %s", ErrChangedSince, strings.Join(changed, "; "))
	}
	return nil
}

func (j *Journal) checksum() (string, error) {
	data, err := json.Marshal(journalBody{j.Version, j.BootID, j.Netns, j.PID, j.Exe, j.Created, j.ProcRoot, j.Entries})
	if err != nil {
		return "", err
	}
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:]), nil
}

// journalBody is what the checksum covers: every field but the checksum.
type journalBody struct {
	Version  int
	BootID   string
	Netns    string
	PID      int
	Exe      string
	Created  time.Time
	ProcRoot string
	Entries  []JournalEntry
}

// write stores the journal durably: temporary file, fsync, link to its
// name, fsync of the directory, so that it survives kill -9 and a crash
// right after. The link fails if the name exists: of two host-mode runs
// started at once, only one gets the journal (ErrJournalExists).
func (j *Journal) write() error {
	sum, err := j.checksum()
	if err != nil {
		return err
	}
	j.Checksum = sum
	data, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(j.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("sysctl journal: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(j.path)+".tmp*")
	if err != nil {
		return fmt.Errorf("sysctl journal: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	_, werr := f.Write(append(data, '\n'))
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Link(tmp, j.path)
		if errors.Is(werr, fs.ErrExist) {
			werr = fmt.Errorf("%w: %w", ErrJournalExists, werr)
		}
	}
	if werr != nil {
		return fmt.Errorf("sysctl journal %s: %w", j.path, werr)
	}
	if d, err := os.Open(dir); err == nil {
		werr = d.Sync()
		d.Close()
	}
	if werr != nil {
		return fmt.Errorf("sysctl journal %s: sync directory: %w", j.path, werr)
	}
	return nil
}

// selfExe is this process's binary, "" when unknown.
func selfExe() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	return exe
}
