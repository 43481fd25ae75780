package kernel

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// KernelSymbol returns the address of a kernel function or variable from
// /proc/kallsyms. The kernel shows zeros for every address to a reader
// without CAP_SYSLOG (kernel.kptr_restrict); that is an error here, not an
// address.
func (f FS) KernelSymbol(name string) (uint64, error) {
	fh, err := f.Open("kallsyms")
	if err != nil {
		return 0, err
	}
	defer fh.Close()
	return ParseKallsyms(fh, name)
}

// ParseKallsyms finds a symbol of the kernel proper (not a module's) in
// the "ADDRESS TYPE NAME [MODULE]" lines of /proc/kallsyms.
func ParseKallsyms(r io.Reader, name string) (uint64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 || fields[2] != name {
			continue
		}
		addr, err := strconv.ParseUint(fields[0], 16, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: kallsyms address %q", ErrFormat, fields[0])
		}
		if addr == 0 {
			return 0, fmt.Errorf("%w: kallsyms hides the address of %s (needs CAP_SYSLOG, or kernel.kptr_restrict=0)", ErrHidden, name)
		}
		return addr, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%w: kernel symbol %s", ErrNotExist, name)
}

// ErrHidden marks a kernel file that exists but hides what was asked from
// this reader.
var ErrHidden = errors.New("hidden by the kernel")
