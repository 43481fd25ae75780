//go:build !unix

package results

import (
	"io/fs"
	"os"
)

// writable reports whether path opens for writing (no access(2) here).
func writable(path string) bool {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// keepOwner is a no-op where files have no Unix owner.
func keepOwner(*os.File, fs.FileInfo) {}

// openPipe opens a named pipe for writing (no non-blocking open here).
func openPipe(path string) (*os.File, error) { return os.OpenFile(path, os.O_WRONLY, 0) }
