// Package benchmarks holds closeload's `go test -bench` suites: the close
// paths of every scenario, the latency recorder, the collector and the
// report. Compare runs with benchstat:
//
//	go test ./benchmarks -run '^$' -bench . -count 6 | tee new.txt
//	benchstat old.txt new.txt
package benchmarks
