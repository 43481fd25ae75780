package verify

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/closeload/closeload/internal/binarytest"
	"github.com/closeload/closeload/internal/nstest"
)

// TestVerifyBinaryUnprivileged runs the whole catalogue the way a user does,
// with the closeload binary, as an unprivileged user: uid 65534 when the
// test runs as root (each claim then runs in a user namespace of its own),
// the test's own user otherwise. Every claim must be decided.
func TestVerifyBinaryUnprivileged(t *testing.T) {
	if testing.Short() {
		t.Skip("builds closeload and runs every claim")
	}
	if nstest.Inside() {
		t.Skip("inside a test namespace")
	}
	bin := binarytest.Closeload(t)
	cmd := exec.Command(bin, "verify", "--format", "json")
	cmd.Dir = os.TempDir()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if os.Geteuid() == 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: 65534, Gid: 65534}
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if strings.Contains(stderr.String(), ErrNoNamespace.Error()) {
		nstest.Unavailable(t, stderr.String())
		return
	}
	if err != nil {
		t.Fatalf("closeload verify: %v\n%s", err, stderr.String())
	}
	var rep Report
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("decode the report: %v\n%s", err, out)
	}
	if len(rep.Results) != len(Catalogue()) {
		t.Fatalf("%d results, want %d", len(rep.Results), len(Catalogue()))
	}
	for _, r := range rep.Results {
		if r.Verdict == Inconclusive || r.Error != "" || r.Namespace != "isolated-userns" {
			t.Errorf("%s: %s (error %q) in %q, want a decision in isolated-userns\n%s", r.Claim, r.VerdictText(), r.Error, r.Namespace, r.Finding)
		}
	}
	t.Logf("%d claims decided in %.1f s", len(rep.Results), rep.Seconds)
}
