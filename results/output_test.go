package results

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// dirNames lists the names in dir, to check that nothing was left behind.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func mustWriteFile(t *testing.T, path, data string, mode fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

func readString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestWriteOutputRegularKeepsMode replaces existing records of several
// modes: the content is new, the mode the old one's, and no temporary file
// is left.
func TestWriteOutputRegularKeepsMode(t *testing.T) {
	for _, mode := range []fs.FileMode{0o600, 0o640, 0o644, 0o444} {
		t.Run(mode.String(), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "r.json")
			mustWriteFile(t, path, "old", mode)
			if err := WriteOutput(path, []byte("new")); err != nil {
				t.Fatal(err)
			}
			if got := readString(t, path); got != "new" {
				t.Errorf("content %q, want new", got)
			}
			fi, _ := os.Stat(path)
			if fi.Mode().Perm() != mode {
				t.Errorf("mode %v after replacing a %v file", fi.Mode().Perm(), mode)
			}
			if names := dirNames(t, dir); len(names) != 1 {
				t.Errorf("left behind: %v", names)
			}
		})
	}
}

// TestWriteOutputSymlink writes through a link to a record: the link stays
// a link, its target gets the data and keeps its inode and mode.
func TestWriteOutputSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "runs", "2026.json")
	os.Mkdir(filepath.Dir(target), 0o755)
	mustWriteFile(t, target, "an older and longer record", 0o600)
	before, _ := os.Stat(target)
	link := filepath.Join(dir, "latest.json")
	if err := os.Symlink("runs/2026.json", link); err != nil {
		t.Fatal(err)
	}
	if err := CheckOutput(link); err != nil {
		t.Fatalf("CheckOutput(link): %v", err)
	}
	if err := WriteOutput(link, []byte("new")); err != nil {
		t.Fatal(err)
	}
	lfi, err := os.Lstat(link)
	if err != nil || lfi.Mode()&fs.ModeSymlink == 0 {
		t.Fatalf("link replaced: %v %v", lfi.Mode(), err)
	}
	if got := readString(t, target); got != "new" {
		t.Errorf("target holds %q, want new", got)
	}
	after, _ := os.Stat(target)
	if !os.SameFile(before, after) || after.Mode().Perm() != 0o600 {
		t.Errorf("target replaced or mode changed: same=%v mode=%v", os.SameFile(before, after), after.Mode().Perm())
	}
	// A dangling link creates its target.
	dangling := filepath.Join(dir, "next.json")
	os.Symlink("runs/next.json", dangling)
	if err := CheckOutput(dangling); err != nil {
		t.Fatalf("CheckOutput(dangling link): %v", err)
	}
	if err := WriteOutput(dangling, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if got := readString(t, filepath.Join(dir, "runs", "next.json")); got != "x" {
		t.Errorf("dangling link target holds %q", got)
	}
	if lfi, _ := os.Lstat(dangling); lfi.Mode()&fs.ModeSymlink == 0 {
		t.Error("dangling link replaced")
	}
}

// TestCheckOutput covers what a run refuses before it starts, and checks
// that the check leaves nothing behind.
func TestCheckOutput(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	mustWriteFile(t, file, "x", 0o644)
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	os.Symlink("sub", filepath.Join(dir, "link-to-dir"))
	tests := []struct {
		path string
		want error
	}{
		{"-", nil},
		{file, nil},
		{filepath.Join(dir, "new.json"), nil},
		{filepath.Join(dir, "a", "b", "new.json"), nil}, // directories created at write time
		{filepath.Join(dir, "sub"), ErrOutputIsDir},
		{filepath.Join(dir, "sub") + "/", ErrOutputIsDir},
		{filepath.Join(dir, "link-to-dir"), ErrOutputIsDir},
		{filepath.Join(file, "r.json"), ErrOutputUnwritable}, // a file where a directory is expected
		{filepath.Join(file, "a", "r.json"), ErrOutputUnwritable},
		{"", ErrOutputUnwritable},
	}
	for _, tc := range tests {
		t.Run(strings.TrimPrefix(tc.path, dir), func(t *testing.T) {
			err := CheckOutput(tc.path)
			if !errors.Is(err, tc.want) {
				t.Fatalf("CheckOutput(%q) = %v, want %v", tc.path, err, tc.want)
			}
			if err != nil && tc.path != "" && !strings.Contains(err.Error(), tc.path) {
				t.Errorf("error %q does not name the path", err)
			}
		})
	}
	if names := dirNames(t, dir); strings.Join(names, " ") != "file link-to-dir sub" {
		t.Errorf("CheckOutput left %v", names)
	}
	if names := dirNames(t, filepath.Join(dir, "sub")); len(names) != 0 {
		t.Errorf("CheckOutput left %v in sub", names)
	}
}

// TestWriteOutputSavedBeside makes the target unusable after the check (a
// directory appears at its name): the record goes beside it and the error
// names that file.
func TestWriteOutputSavedBeside(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "r.json")
	if err := CheckOutput(path); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(path, 0o755) // appears during the run
	err := Write(path, sampleRun(t))
	var se *SavedElsewhere
	if !errors.As(err, &se) {
		t.Fatalf("err = %v, want *SavedElsewhere", err)
	}
	if filepath.Dir(se.Path) != dir || !strings.HasPrefix(filepath.Base(se.Path), "r.saved-") || filepath.Ext(se.Path) != ".json" {
		t.Errorf("saved at %s, want r.saved-*.json beside %s", se.Path, path)
	}
	if !strings.Contains(err.Error(), se.Path) || !errors.Is(err, ErrOutputIsDir) {
		t.Errorf("error %q should name %s and wrap ErrOutputIsDir", err, se.Path)
	}
	r, rerr := ReadFile(se.Path)
	if rerr != nil || r.ID != sampleRun(t).ID {
		t.Fatalf("saved record does not read back: %v", rerr)
	}
	if fi, _ := os.Stat(se.Path); fi.Mode().Perm()&0o002 != 0 {
		t.Errorf("saved record is world-writable: %v", fi.Mode())
	}
}

// TestWriteOutputSavedInTempDir puts the target under a regular file, so
// that nothing can be created beside it: the record lands in os.TempDir().
func TestWriteOutputSavedInTempDir(t *testing.T) {
	dir := t.TempDir()
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	blocker := filepath.Join(dir, "results")
	mustWriteFile(t, blocker, "not a directory", 0o644)
	path := filepath.Join(blocker, "r.json")
	err := WriteOutput(path, []byte("record"))
	var se *SavedElsewhere
	if !errors.As(err, &se) {
		t.Fatalf("err = %v, want *SavedElsewhere", err)
	}
	if filepath.Dir(se.Path) != tmp || se.Target != path {
		t.Errorf("saved at %s for %s, want in %s", se.Path, se.Target, tmp)
	}
	if got := readString(t, se.Path); got != "record" {
		t.Errorf("saved %q", got)
	}
	if got := readString(t, blocker); got != "not a directory" {
		t.Errorf("blocker changed: %q", got)
	}
}

// TestWriteOutputLostNamesBoth makes every place fail: the error wraps
// ErrOutputUnwritable and says that saving elsewhere failed too.
func TestWriteOutputLostNamesBoth(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "f")
	mustWriteFile(t, blocker, "x", 0o644)
	t.Setenv("TMPDIR", filepath.Join(blocker, "tmp"))
	err := WriteOutput(filepath.Join(blocker, "r.json"), []byte("record"))
	var se *SavedElsewhere
	if errors.As(err, &se) || !errors.Is(err, ErrOutputUnwritable) || !strings.Contains(err.Error(), "elsewhere failed") {
		t.Fatalf("err = %v, want ErrOutputUnwritable saying saving elsewhere failed", err)
	}
}

func TestCreateLog(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "logs", "shard-0.log")
	f, err := CreateLog(path)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("first")
	f.Close()
	os.Chmod(path, 0o600)
	f, err = CreateLog(path)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("2")
	f.Close()
	if got := readString(t, path); got != "2" {
		t.Errorf("log holds %q, want it truncated to 2", got)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("log mode %v, want 0600 kept", fi.Mode().Perm())
	}
	if _, err := CreateLog(dir); !errors.Is(err, ErrOutputIsDir) {
		t.Errorf("CreateLog(dir) = %v, want ErrOutputIsDir", err)
	}
	if f, err := CreateLog("-"); err != nil || f != os.Stdout {
		t.Errorf("CreateLog(-) = %v, %v, want os.Stdout", f, err)
	}
}

func TestSavedElsewhereUnwraps(t *testing.T) {
	inner := errors.New("disk full")
	var err error = &SavedElsewhere{Target: "a", Path: "b", Err: inner}
	if !errors.Is(err, inner) || !bytes.Contains([]byte(err.Error()), []byte("saved in b")) {
		t.Fatalf("%v", err)
	}
}

func TestSameOutput(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "r.json")
	mustWriteFile(t, file, "x", 0o644)
	os.Symlink("r.json", filepath.Join(dir, "latest.json"))
	t.Chdir(dir)
	tests := []struct {
		a, b string
		want bool
	}{
		{"-", "-", true},
		{file, "r.json", true},
		{file, filepath.Join(dir, "latest.json"), true},
		{"new.hlog", filepath.Join(dir, "new.hlog"), true},
		{"new.hlog", "./sub/../new.hlog", true},
		{"r.json", "new.hlog", false},
		{"-", "r.json", false},
		{"-", "new.json", false},
		{"", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.a+"|"+tc.b, func(t *testing.T) {
			if got := SameOutput(tc.a, tc.b); got != tc.want {
				t.Errorf("SameOutput(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
			}
			if got := SameOutput(tc.b, tc.a); got != tc.want {
				t.Errorf("SameOutput(%q, %q) = %v, want %v (not symmetric)", tc.b, tc.a, got, tc.want)
			}
		})
	}
}
