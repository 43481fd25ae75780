package runner

import (
	"fmt"
	"os"
	"testing"
)

// failShardEnv makes shard 1 of a run of several processes fail at once,
// for the test of a missing shard.
const failShardEnv = "CLOSELOAD_TEST_FAIL_SHARD"

// TestMain lets this test binary serve the children of isolated and
// multi-process runs, as the closeload binary does.
func TestMain(m *testing.M) {
	if os.Getenv(failShardEnv) == "1" {
		childHook = func(p *Plan) error {
			if p.Shard != nil && p.Shard.Index == 1 {
				return fmt.Errorf("shard 1 fails on purpose")
			}
			return nil
		}
	}
	if code, ok := ServeChild(); ok {
		os.Exit(code)
	}
	os.Exit(m.Run())
}
