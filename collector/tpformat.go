package collector

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// ErrTracepointFormat marks a tracepoint format file that cannot be read:
// the tracer needs exact field offsets and refuses to guess them.
var ErrTracepointFormat = errors.New("bad tracepoint format")

// TracepointField is one field of a tracepoint's record as the kernel's
// format file describes it: where it is and how wide.
type TracepointField struct {
	Name   string
	Type   string
	Offset int
	Size   int
	Signed bool
}

// TracepointFormat is a parsed tracefs events/GROUP/NAME/format file. The
// tracer takes every offset it loads from here, so a kernel that moves a
// field is read correctly or refused, never misread.
type TracepointFormat struct {
	Name   string
	ID     uint32
	Fields []TracepointField
	// PrintFmt is the text after "print fmt: ", kept for Symbols.
	PrintFmt string
}

var fieldLine = regexp.MustCompile(`^field:(.+?);\s*offset:(\d+);\s*size:(\d+);\s*signed:(\d+);`)

// ParseTracepointFormat reads a format file.
func ParseTracepointFormat(r io.Reader) (TracepointFormat, error) {
	var f TracepointFormat
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(s, "name:"):
			f.Name = strings.TrimSpace(strings.TrimPrefix(s, "name:"))
		case strings.HasPrefix(s, "ID:"):
			id, err := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(s, "ID:")), 10, 32)
			if err != nil {
				return f, fmt.Errorf("%w: line %d: ID %q: want a number", ErrTracepointFormat, line, s)
			}
			f.ID = uint32(id)
		case strings.HasPrefix(s, "field:"):
			m := fieldLine.FindStringSubmatch(s)
			if m == nil {
				return f, fmt.Errorf("%w: line %d: %q: want field:TYPE NAME; offset:N; size:N; signed:N;", ErrTracepointFormat, line, s)
			}
			off, err1 := strconv.Atoi(m[2])
			size, err2 := strconv.Atoi(m[3])
			if err1 != nil || err2 != nil || size <= 0 || off < 0 || off > 1<<16 || size > 1<<16 {
				return f, fmt.Errorf("%w: line %d: offset %q size %q out of range", ErrTracepointFormat, line, m[2], m[3])
			}
			decl := strings.TrimSpace(m[1])
			i := strings.LastIndexAny(decl, " *")
			if i < 0 || i == len(decl)-1 {
				return f, fmt.Errorf("%w: line %d: field %q has no name", ErrTracepointFormat, line, decl)
			}
			name := decl[i+1:]
			if j := strings.IndexByte(name, '['); j >= 0 {
				name = name[:j]
			}
			if name == "" {
				return f, fmt.Errorf("%w: line %d: field %q has no name", ErrTracepointFormat, line, decl)
			}
			f.Fields = append(f.Fields, TracepointField{
				Name: name, Type: strings.TrimSpace(decl[:i+1]), Offset: off, Size: size, Signed: m[4] == "1",
			})
		case strings.HasPrefix(s, "print fmt:"):
			f.PrintFmt = strings.TrimSpace(strings.TrimPrefix(s, "print fmt:"))
		}
	}
	if err := sc.Err(); err != nil {
		return f, fmt.Errorf("%w: %v", ErrTracepointFormat, err)
	}
	if f.Name == "" || len(f.Fields) == 0 {
		return f, fmt.Errorf("%w: no name or no fields", ErrTracepointFormat)
	}
	return f, nil
}

// Field returns the named field, checking its size is one of sizes (none:
// any), so a program never loads a wider or narrower value than the kernel
// stored.
func (f TracepointFormat) Field(name string, sizes ...int) (TracepointField, error) {
	for _, fl := range f.Fields {
		if fl.Name != name {
			continue
		}
		if len(sizes) == 0 {
			return fl, nil
		}
		for _, s := range sizes {
			if fl.Size == s {
				return fl, nil
			}
		}
		return fl, fmt.Errorf("%w: %s.%s is %d bytes, want %v", ErrTracepointFormat, f.Name, name, fl.Size, sizes)
	}
	return TracepointField{}, fmt.Errorf("%w: %s has no field %q", ErrTracepointFormat, f.Name, name)
}

var symbolPair = regexp.MustCompile(`\{\s*(-?\d+)\s*,\s*"([^"]*)"\s*\}`)

// Symbols returns the value names __print_symbolic(REC->field, ...) gives a
// field in the print format, e.g. the kernel's enum sk_rst_reason names of
// tcp_send_reset's reason. Entries whose value is a macro name instead of a
// number are skipped. Absent: an empty map.
func (f TracepointFormat) Symbols(field string) map[int]string {
	out := map[int]string{}
	key := "__print_symbolic(REC->" + field + ","
	i := strings.Index(f.PrintFmt, key)
	if i < 0 {
		return out
	}
	rest := f.PrintFmt[i+len(key):]
	// The list ends at the parenthesis closing __print_symbolic.
	depth := 1
	end := len(rest)
	inStr := false
	for j := 0; j < len(rest); j++ {
		switch c := rest[j]; {
		case c == '"':
			inStr = !inStr
		case inStr:
		case c == '(':
			depth++
		case c == ')':
			depth--
		}
		if depth == 0 {
			end = j
			break
		}
	}
	for _, m := range symbolPair.FindAllStringSubmatch(rest[:end], -1) {
		v, err := strconv.Atoi(m[1])
		if err == nil {
			out[v] = m[2]
		}
	}
	return out
}
