package verify

import (
	"context"
	"io"
	"strings"
	"testing"
)

// listen-go takes exactly one address; anything else is refused with a
// message saying what it wants.
func TestListenGoArgs(t *testing.T) {
	for _, args := range [][]string{nil, {"127.0.0.1:0", "extra"}} {
		err := RunHelper(context.Background(), "listen-go", args, strings.NewReader(""), io.Discard)
		if err == nil || !strings.Contains(err.Error(), "want one ADDR") {
			t.Errorf("listen-go %q: err = %v, want a usage error", args, err)
		}
	}
}

// listen-go reports the queue limit the kernel set, then exits when its
// input ends.
func TestListenGoReady(t *testing.T) {
	var out strings.Builder
	if err := RunHelper(context.Background(), "listen-go", []string{"127.0.0.1:0"}, strings.NewReader(""), &out); err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(out.String())
	if len(f) != 3 || f[0] != "ready" || f[2] == "0" {
		t.Fatalf("listen-go printed %q, want \"ready PORT LIMIT\" with a limit", out.String())
	}
}
