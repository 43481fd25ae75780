// Package kubernetes holds closeload's Kubernetes manifests, built with
// kustomize: base/ is an Indexed Job that runs one shard of a run per pod,
// the ReadWriteMany claim the shards write to, the ConfigMap of the run's
// settings and a suspended Job that merges the shards into one report;
// components/shards copies the shard count into the Job; example/ is an
// overlay that sets a run. The package's Go code is only its test, which
// renders the kustomizations as `kubectl kustomize` does, decodes every
// object strictly into the Kubernetes API types, checks the shard wiring
// (index → --shard, completions = shard count, one shared --start-at and
// --run-id) and runs the rendered command lines against loopback.
package kubernetes
