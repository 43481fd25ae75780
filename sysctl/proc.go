package sysctl

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/closeload/closeload/kernel"
)

// DefaultProcRoot is where /proc is mounted; tests pass a fake tree instead.
const DefaultProcRoot = "/proc"

// Sentinel errors of reading and writing keys.
var (
	ErrNotHere = errors.New("sysctl not present here")
	ErrRefused = errors.New("kernel refused the value")
)

// keyPath turns a dotted name into its path below the /proc root.
func keyPath(name string) string {
	rel, _ := filepath.Rel(kernel.DefaultRoot, kernel.NewFS("").SysctlPath(name))
	return rel
}

// File is the absolute path of a key under procRoot ("" means /proc).
func File(procRoot, name string) string { return kernel.NewFS(procRoot).SysctlPath(name) }

// normalize joins a value's fields with single spaces, as Snapshot and
// Assignment values are compared.
func normalize(s string) string { return strings.Join(strings.Fields(s), " ") }

// Read returns a key's current value, whitespace normalised.
func Read(procRoot, name string) (string, error) {
	v, err := kernel.NewFS(procRoot).Sysctl(name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("%w: %s (%s)", ErrNotHere, name, notHereWhy(name))
		}
		return "", fmt.Errorf("read %s: %w", name, err)
	}
	return v, nil
}

func notHereWhy(name string) string {
	if k, ok := byName[name]; ok && k.Scope == ScopeGlobal {
		return "a global key: the kernel shows it only in the host's initial network namespace"
	}
	return "this kernel has no such key, or it is global and this is not the host's initial network namespace"
}

// Snapshot reads every registry key under procRoot. A global key is not
// visible inside a network namespace, yet it is in effect there with the
// host's value: in a child of IsolatedCommand it carries the value the
// parent read at launch. Keys this kernel does not have are omitted.
func Snapshot(procRoot string) map[string]string {
	m := make(map[string]string, len(registry))
	var globals map[string]string
	for _, k := range registry {
		if v, err := Read(procRoot, k.Name); err == nil {
			m[k.Name] = v
			continue
		}
		if k.Scope != ScopeGlobal || (procRoot != "" && procRoot != DefaultProcRoot) {
			continue
		}
		if globals == nil {
			globals = parentGlobals()
		}
		if v, ok := globals[k.Name]; ok {
			m[k.Name] = v
		}
	}
	return m
}

// hostGlobalsEnv carries the parent's values of the global keys into an
// isolated child, which cannot read them.
const hostGlobalsEnv = "CLOSELOAD_HOST_GLOBALS"

// hostGlobals encodes the global keys readable here as key=value lines.
func hostGlobals() string {
	var b strings.Builder
	for _, k := range registry {
		if k.Scope != ScopeGlobal {
			continue
		}
		if v, err := Read(DefaultProcRoot, k.Name); err == nil {
			b.WriteString(k.Name + "=" + v + ";")
		}
	}
	return b.String()
}

// parentGlobals decodes hostGlobalsEnv, keeping only well-formed global
// registry keys and valid values.
func parentGlobals() map[string]string {
	m := map[string]string{}
	for _, kv := range strings.Split(os.Getenv(hostGlobalsEnv), ";") {
		k, v, ok := strings.Cut(kv, "=")
		if key, known := byName[k]; !ok || !known || key.Scope != ScopeGlobal {
			continue
		}
		if nv, err := NormalizeValue(k, v); err == nil {
			m[k] = nv
		}
	}
	return m
}

// SnapshotWith is Snapshot plus the keys of as that are outside the
// registry (--allow-unknown-sysctl), so that before/after cover them too.
func SnapshotWith(procRoot string, as []Assignment) map[string]string {
	m := Snapshot(procRoot)
	for _, a := range as {
		if _, known := byName[a.Key]; known {
			continue
		}
		if v, err := Read(procRoot, a.Key); err == nil {
			m[a.Key] = v
		}
	}
	return m
}

// write sets one key and reads it back; a value the kernel silently changes
// (clamps, truncates) is reported, since the run would not measure what the
// user asked for.
func write(procRoot, name, value string) error {
	werr := kernel.NewFS(procRoot).WriteSysctl(name, value)
	if errors.Is(werr, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s (%s)", ErrNotHere, name, notHereWhy(name))
	}
	if werr != nil {
		if errors.Is(werr, syscall.EINVAL) {
			note := ""
			if k, ok := byName[name]; ok && k.Note != "" {
				note = "; " + k.Note
			}
			return fmt.Errorf("%w: %s=%q: %v%s", ErrRefused, name, value, werr, note)
		}
		return fmt.Errorf("set %s=%q: %w", name, value, werr)
	}
	got, err := Read(procRoot, name)
	if err != nil {
		return err
	}
	if got != normalize(value) {
		return fmt.Errorf("%w: %s=%q reads back as %q", ErrRefused, name, value, got)
	}
	return nil
}

// Apply sets every assignment under procRoot in order. If one fails, those
// already written are put back to their old values before the error is
// returned: no partial change. That includes the failing key itself when the
// kernel took the write but changed the value (clamped it).
func Apply(procRoot string, as []Assignment) error {
	olds := make([]string, len(as))
	for i, a := range as {
		v, err := Read(procRoot, a.Key)
		if err != nil {
			return err
		}
		olds[i] = v
	}
	for i, a := range as {
		if err := write(procRoot, a.Key, a.Value); err != nil {
			var rerrs []error
			for j := i; j >= 0; j-- {
				if j == i {
					if cur, rerr := Read(procRoot, a.Key); rerr != nil || cur == olds[i] {
						continue // the failed write changed nothing
					}
				}
				if rerr := write(procRoot, as[j].Key, olds[j]); rerr != nil {
					rerrs = append(rerrs, rerr)
				}
			}
			if len(rerrs) > 0 {
				return fmt.Errorf("%w; and putting back earlier keys failed: %w", err, errors.Join(rerrs...))
			}
			return err
		}
	}
	return nil
}
