// Package kubernetes holds closeload's Kubernetes manifests: an Indexed Job
// that runs one shard of a run per pod (closeload-job.json) and a Job that
// merges the shards into one report (closeload-report.json). They are JSON
// because kubectl applies JSON as it is and the module has no YAML library;
// the package's Go code is only its test, which checks the shard wiring
// (index → --shard, completions = shard count, one shared --start-at and
// --run-id) and runs the manifest's own command lines against loopback.
package kubernetes
