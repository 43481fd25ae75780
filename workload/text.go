package workload

// The types of a run's configuration read and write themselves as the text
// the user typed ("client-halfclose:70,linger0:30", "poisson", "server"), so
// a plan handed to a child process as JSON reads back exactly and stays
// legible.

// MarshalText writes the mix as ParseMix reads it.
func (m Mix) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText parses the mix; empty text is the empty mix.
func (m *Mix) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*m = Mix{}
		return nil
	}
	mm, err := ParseMix(string(b))
	if err != nil {
		return err
	}
	*m = mm
	return nil
}

// MarshalText writes the arrival's name.
func (a Arrival) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText parses the arrival's name.
func (a *Arrival) UnmarshalText(b []byte) error {
	v, err := ParseArrival(string(b))
	if err != nil {
		return err
	}
	*a = v
	return nil
}

// MarshalText writes the closer's name.
func (c Closer) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText parses the closer's name.
func (c *Closer) UnmarshalText(b []byte) error {
	v, err := ParseCloser(string(b))
	if err != nil {
		return err
	}
	*c = v
	return nil
}
