package collector

import (
	"errors"
	"testing"
)

func TestDwellBuckets(t *testing.T) {
	prev := -1
	for _, d := range []uint64{0, 1, 15, 16, 17, 31, 32, 33, 1000, 1 << 20, 200_000_000, 60_000_000_000, 1 << 42, 1<<43 - 1, 1 << 43, 1 << 62} {
		b := dwellBucketOf(d)
		if b < prev || b >= dwellBuckets {
			t.Fatalf("bucket of %d = %d (previous %d, buckets %d)", d, b, prev, dwellBuckets)
		}
		prev = b
		if d == 0 || d >= 60_000_000_000 {
			continue
		}
		v := dwellBucketValue(b)
		if diff := float64(v) - float64(d); diff > float64(d)/16 || -diff > float64(d)/16 {
			t.Errorf("%d recorded as %d: more than 1/16 off", d, v)
		}
	}
	if dwellBucketOf(1<<43) != dwellBuckets-1 || dwellBucketOf(1<<62) != dwellBuckets-1 {
		t.Error("overflow bucket")
	}
}

func TestTracerConfigValidate(t *testing.T) {
	many := make([]TracerTarget, MaxTracerTargets+1)
	for i := range many {
		many[i].Port = uint16(1000 + i)
	}
	for name, cfg := range map[string]TracerConfig{
		"no targets": {},
		"port 0":     {Targets: []TracerTarget{{Port: 0}}},
		"twice":      {Targets: []TracerTarget{{Port: 80}, {Port: 80}}},
		"too many":   {Targets: many},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := OpenTracer(cfg); !errors.Is(err, ErrTracerConfig) {
				t.Errorf("got %v, want ErrTracerConfig", err)
			}
		})
	}
}

func TestCensusFromCounters(t *testing.T) {
	ctr := make([]uint64, ctrCount)
	at := func(g, o, n int) *uint64 { return &ctr[ctrTransitions+g*256+o*16+n] }
	// Target side of target 0 (group 1): 5 children, 3 reached CLOSE_WAIT,
	// 1 of them closed; the listener itself opened once.
	*at(1, StateClose, StateListen) = 1
	*at(1, StateListen, StateSynRecv) = 5
	*at(1, StateSynRecv, StateEstablished) = 5
	*at(1, StateEstablished, StateCloseWait) = 3
	*at(1, StateCloseWait, StateLastAck) = 1
	*at(1, StateLastAck, StateClose) = 1
	c := censusMap(censusFromCounters(ctr, 1))
	tg := c.Sides["target"]
	if tg["LISTEN"].Total != 1 || tg["ESTABLISHED"].Total != 2 || tg["CLOSE_WAIT"].Total != 2 || tg["LAST_ACK"].Total != 0 || tg["SYN_RECV"].Total != 0 {
		t.Errorf("target census %v", tg)
	}
	if len(c.Sides["client"]) != 0 {
		t.Errorf("client census %v, want empty", c.Sides["client"])
	}
}
