package suggest

import "testing"

func TestDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"abc", "", 3}, {"", "abc", 3}, {"kitten", "sitting", 3},
		{"client-halfclose", "client-halfclos", 1}, {"linger0", "linger0", 0},
	}
	for _, tc := range tests {
		t.Run(tc.a+"/"+tc.b, func(t *testing.T) {
			if got := Distance(tc.a, tc.b); got != tc.want {
				t.Fatalf("Distance = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestNearest(t *testing.T) {
	names := []string{"linger0", "client-halfclose", "server-halfclose"}
	tests := []struct{ in, want string }{
		{"client-halfclos", "client-halfclose"},
		{"lingr0", "linger0"},
		{"banana", ""},
		{"", ""},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got := Nearest(tc.in, names); got != tc.want {
				t.Fatalf("Nearest(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}
