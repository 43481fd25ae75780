package results

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// Sentinel errors of record I/O, wrapped with the file and the detail so that
// callers can tell a damaged record from a foreign one.
var (
	ErrDamaged = errors.New("damaged record")
	ErrVersion = errors.New("unsupported record version")
)

// Write stores r as indented JSON at path by the rules of WriteOutput: "-"
// is standard output, a link or device is written through, a regular file
// is replaced atomically (a reader sees the old file or the whole new one,
// even if the process dies), and a record that cannot reach path is saved
// beside it (*SavedElsewhere says where).
func Write(path string, r *Run) error {
	if r.Schema == 0 {
		r.Schema = SchemaVersion
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode record: %w", err)
	}
	data = append(data, '\n')
	return WriteOutput(path, data)
}

// ReadFile reads and checks one record file.
func ReadFile(path string) (*Run, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := Read(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// Read decodes one record and says precisely what is wrong with a damaged
// one: truncated JSON, a field of the wrong type, an unknown version, or a
// histogram that does not decode.
func Read(rd io.Reader) (*Run, error) {
	data, err := io.ReadAll(rd)
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("%w: empty file", ErrDamaged)
	}
	var probe struct {
		Schema *int `json:"schema"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrDamaged, describeJSONError(data, err))
	}
	if probe.Schema == nil {
		return nil, fmt.Errorf("%w: no \"schema\" field; not a closeload record", ErrDamaged)
	}
	if *probe.Schema != SchemaVersion {
		return nil, fmt.Errorf("%w: schema %d, this closeload reads %d", ErrVersion, *probe.Schema, SchemaVersion)
	}
	var r Run
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrDamaged, describeJSONError(data, err))
	}
	if r.ID == "" {
		return nil, fmt.Errorf("%w: empty \"id\"", ErrDamaged)
	}
	for _, s := range r.Scenarios {
		for name, p := range s.Phases {
			if _, err := DecodeHistogram(p.Histogram); err != nil {
				return nil, fmt.Errorf("%w: scenario %s phase %s: %w", ErrDamaged, s.Name, name, err)
			}
		}
	}
	return &r, nil
}

// describeJSONError adds the line and column to a JSON error so that a user
// can open the damaged file at the right place.
func describeJSONError(data []byte, err error) string {
	var off int64 = -1
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		off = syn.Offset
	case errors.As(err, &typ):
		off = typ.Offset
		if typ.Field != "" {
			return fmt.Sprintf("field %q: %v (line %d)", typ.Field, err, lineOf(data, off))
		}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated JSON (the file ends in the middle of the record)"
	}
	if off >= 0 {
		return fmt.Sprintf("%v (line %d)", err, lineOf(data, off))
	}
	return err.Error()
}

func lineOf(data []byte, off int64) int {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	return bytes.Count(data[:off], []byte("\n")) + 1
}
