// Package deploy is how closeload runs beyond one machine: the container
// image (Dockerfile) and, under kubernetes/, an Indexed Job. closeload ships
// no orchestrator: every host runs `closeload run --shard i/N --start-at T
// --run-id R` and `closeload report` merges the records of run R, flagging
// the shards that are missing. The package's Go code is only its test, which
// runs that scheme with network namespaces as hosts.
package deploy
