package results

import "testing"

// TestMergeTargetSide checks that the built-in target's view of each
// scenario is summed like the client's: a --procs run shares one port
// over several targets, so each shard's target saw part of every shard's
// connections.
func TestMergeTargetSide(t *testing.T) {
	shard := func(i int, accepted uint64) *Run {
		return &Run{Schema: SchemaVersion, ID: "r", Shard: &Shard{Index: i, Count: 2},
			Scenarios: []ScenarioResult{{Name: "client-halfclose", Cycles: accepted, Observed: Observed{EOF: accepted, LostResponses: 1},
				Target: &TargetSide{Accepted: accepted, Completed: accepted - 1, Bytes: Bytes{Sent: 16 * accepted},
					Errors: map[string]ErrorCount{"reset": {Count: 1, Example: "connection reset by peer"}}, Observed: Observed{EOF: accepted}}}},
			Storm: &StormResult{Opened: accepted, Closed: accepted, HoldPeak: accepted, TimeToLastClose: int64(i + 1)}}
	}
	m, missing, err := Merge([]*Run{shard(0, 10), shard(1, 30)})
	if err != nil || len(missing) != 0 {
		t.Fatal(err, missing)
	}
	tg := m.Scenarios[0].Target
	if tg == nil || tg.Accepted != 40 || tg.Completed != 38 || tg.Bytes.Sent != 640 || tg.Errors["reset"].Count != 2 || tg.Observed.EOF != 40 {
		t.Errorf("merged target side %+v", tg)
	}
	if m.Scenarios[0].Observed.LostResponses != 2 {
		t.Errorf("lost responses %d, want 2", m.Scenarios[0].Observed.LostResponses)
	}
	if m.Storm.Opened != 40 || m.Storm.HoldPeak != 40 || m.Storm.TimeToLastClose != 2 {
		t.Errorf("storm %+v", m.Storm)
	}
}
