//go:build !linux

package runner

// accessWrite cannot ask the kernel here; the write itself will tell.
func accessWrite(string) error { return nil }
