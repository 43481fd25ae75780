package verify

import (
	"encoding/hex"
	"errors"
	"testing"
)

// A FIN+ACK from 127.0.0.1:44045 to 127.0.0.1:45868 with a 12-byte
// timestamp option and no payload, as captured on lo.
const finSegmentHex = "4500003412344000400600007f0000017f000001" +
	"ac0db32c0000000100000002" + "8011" + "0200" + "fe280000" + "0101080a0000000100000002"

func TestParseSegment(t *testing.T) {
	fin, err := hex.DecodeString(finSegmentHex)
	if err != nil {
		t.Fatal(err)
	}
	withData := append(append([]byte{}, fin...), make([]byte, 5)...)
	withData[3] += 5 // total length
	tests := []struct {
		name    string
		pkt     []byte
		label   string
		src     uint16
		payload int
		err     error
	}{
		{"FIN+ACK", fin, "FIN", 44045, 0, nil},
		{"data and FIN", withData, "DATA+FIN", 44045, 5, nil},
		{"truncated", fin[:30], "", 0, 0, ErrBadPacket},
		{"IPv6", append([]byte{0x60}, fin[1:]...), "", 0, 0, ErrBadPacket},
		{"UDP", func() []byte { p := append([]byte{}, fin...); p[9] = 17; return p }(), "", 0, 0, ErrBadPacket},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := parseSegment(tt.pkt)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.label() != tt.label || s.src != tt.src || s.dst != 45868 || s.payload != tt.payload {
				t.Fatalf("got %+v (%s), want %s from %d with %d bytes", s, s.label(), tt.label, tt.src, tt.payload)
			}
		})
	}
}

func FuzzParseSegment(f *testing.F) {
	fin, _ := hex.DecodeString(finSegmentHex)
	f.Add(fin)
	f.Add(fin[:21])
	f.Fuzz(func(t *testing.T, p []byte) {
		s, err := parseSegment(p)
		if err != nil {
			if !errors.Is(err, ErrBadPacket) {
				t.Fatalf("error %v is not ErrBadPacket", err)
			}
			return
		}
		if s.payload < 0 || s.payload > len(p) {
			t.Fatalf("payload %d of a %d-byte packet", s.payload, len(p))
		}
	})
}
