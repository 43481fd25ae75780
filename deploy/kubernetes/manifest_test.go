package kubernetes_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/closeload/closeload/sysctl"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
)

// only returns the pod's one container.
func only(t *testing.T, what string, p corev1.PodSpec) corev1.Container {
	t.Helper()
	if len(p.Containers) != 1 {
		t.Fatalf("%s: %d containers, want 1", what, len(p.Containers))
	}
	c := p.Containers[0]
	if len(c.Command) != 1 || filepath.Base(c.Command[0]) != "closeload" {
		// No shell: a value computed in the pod (date, hostname) would
		// differ from pod to pod.
		t.Fatalf("%s: command %q, want closeload itself, no shell", what, c.Command)
	}
	if len(c.EnvFrom) != 0 {
		t.Fatalf("%s: envFrom is not expected; every variable is named in env", what)
	}
	return c
}

// flagValues returns every value given to --name, written "--name value" or
// "--name=value". The manifests write no boolean flags.
func flagValues(args []string, name string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--"+name && i+1 < len(args) {
			out = append(out, args[i+1])
			i++
		} else if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			out = append(out, v)
		}
	}
	return out
}

func flagValue(t *testing.T, args []string, name string) string {
	t.Helper()
	v := flagValues(args, name)
	if len(v) != 1 {
		t.Fatalf("--%s given %d times in %q, want once", name, len(v), args)
	}
	return v[0]
}

var varRef = regexp.MustCompile(`^\$\(([A-Za-z_][A-Za-z0-9_]*)\)$`)

// envSource says where a container's variable comes from: "configmap
// NAME/KEY", "field PATH" or "value V".
func envSource(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name != name {
			continue
		}
		switch {
		case e.ValueFrom == nil:
			return "value " + e.Value
		case e.ValueFrom.ConfigMapKeyRef != nil:
			return "configmap " + e.ValueFrom.ConfigMapKeyRef.Name + "/" + e.ValueFrom.ConfigMapKeyRef.Key
		case e.ValueFrom.FieldRef != nil:
			return "field " + e.ValueFrom.FieldRef.FieldPath
		}
		return "other"
	}
	return ""
}

// expand substitutes $(VAR) references as the kubelet does: a defined
// variable is replaced, an undefined reference is left as it is (and
// returned), and $$ is a literal $.
func expand(s string, env map[string]string) (string, []string) {
	var b strings.Builder
	var undefined []string
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String(), undefined
			}
			name := s[i+2 : i+2+end]
			if v, ok := env[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
				undefined = append(undefined, name)
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String(), undefined
}

const indexAnnotation = "metadata.annotations['batch.kubernetes.io/job-completion-index']"

// dirs are the kustomizations every wiring test renders: the base as it is
// committed and the example overlay.
var dirs = []string{"base", "example"}

// TestJobShardWiring checks the Indexed Job: one pod per shard, the pod's
// completion index is its --shard index, the shard count is the Job's
// completions, and --start-at and --run-id are the same for every pod.
func TestJobShardWiring(t *testing.T) {
	for _, dir := range dirs {
		t.Run(dir, func(t *testing.T) { checkShardWiring(t, render(t, dir)) })
	}
}

func checkShardWiring(t *testing.T, m manifests) {
	js := m.job.Spec
	if js.CompletionMode == nil || *js.CompletionMode != batchv1.IndexedCompletion {
		t.Errorf("completionMode %v, want Indexed", js.CompletionMode)
	}
	if js.Completions == nil || js.Parallelism == nil {
		t.Fatalf("completions and parallelism must both be set")
	}
	n := int(*js.Completions)
	if n < 2 || *js.Parallelism != *js.Completions {
		t.Errorf("completions %d, parallelism %d: want equal and at least 2 (all shards at once)", n, *js.Parallelism)
	}
	if js.BackoffLimitPerIndex == nil || *js.BackoffLimitPerIndex != 0 {
		t.Errorf("backoffLimitPerIndex must be 0: a retried shard would start after --start-at and not overlap the others")
	}
	if js.MaxFailedIndexes != nil {
		t.Errorf("maxFailedIndexes must be unset: one failed shard must not stop the others (the report flags it missing)")
	}
	if js.PodReplacementPolicy == nil || *js.PodReplacementPolicy != batchv1.Failed {
		t.Errorf("podReplacementPolicy %v, want Failed", js.PodReplacementPolicy)
	}
	if js.Suspend != nil && *js.Suspend {
		t.Errorf("the shards' Job is suspended: it would never start")
	}
	pod := js.Template.Spec
	if pod.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("restartPolicy %q, want Never: a restarted container would run its shard a second time", pod.RestartPolicy)
	}
	if pod.HostNetwork {
		t.Errorf("hostNetwork: pods would share the node's ports and sysctls")
	}
	c := only(t, "job", pod)
	if len(c.Args) == 0 || c.Args[0] != "run" {
		t.Fatalf("job args %q, want closeload run", c.Args)
	}

	// index → --shard, completions = shard count, for every pod.
	if src := envSource(c, "JOB_COMPLETION_INDEX"); src != "field "+indexAnnotation {
		t.Errorf("JOB_COMPLETION_INDEX from %q, want the downward API's %s", src, indexAnnotation)
	}
	for i := range n {
		args := podArgs(t, m, c, i, nil, "/results")
		if got, want := flagValue(t, args, "shard"), fmt.Sprintf("%d/%d", i, n); got != want {
			t.Errorf("pod %d: --shard %s, want %s (completions %d)", i, got, want, n)
		}
	}

	// --start-at, --run-id and --target from one ConfigMap, the same for
	// every pod of the Job.
	for _, flag := range []string{"start-at", "run-id", "target"} {
		v := flagValue(t, c.Args, flag)
		ref := varRef.FindStringSubmatch(v)
		if ref == nil {
			t.Errorf("--%s %q: want a $(VAR) read from the ConfigMap", flag, v)
			continue
		}
		src := envSource(c, ref[1])
		want := "configmap " + m.config.Name + "/" + ref[1]
		if src != want {
			t.Errorf("--%s: %s comes from %q, want %q", flag, ref[1], src, want)
		}
		if _, ok := m.config.Data[ref[1]]; !ok {
			t.Errorf("ConfigMap %s has no key %s", m.config.Name, ref[1])
		}
	}

	// Every reference resolves to a variable the container defines.
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = "x"
	}
	for _, a := range c.Args {
		if _, undefined := expand(a, env); len(undefined) > 0 {
			t.Errorf("argument %q refers to undefined %v (the kubelet would pass it literally)", a, undefined)
		}
	}

	// Each shard writes its own record, on the shared volume.
	out := flagValue(t, c.Args, "out")
	if !strings.Contains(out, "$(JOB_COMPLETION_INDEX)") || !strings.Contains(out, "$(RUN_ID)") {
		t.Errorf("--out %q must name the run and the shard, or shards overwrite each other", out)
	}
	mount := sharedMount(t, m, "job", pod, c, out)
	if mount.ReadOnly {
		t.Errorf("job: results mount is read-only")
	}
}

// sharedMount returns the container's mount that holds path and checks it is
// the ReadWriteMany claim of the manifests.
func sharedMount(t *testing.T, m manifests, what string, pod corev1.PodSpec, c corev1.Container, path string) corev1.VolumeMount {
	t.Helper()
	for _, vm := range c.VolumeMounts {
		if path != vm.MountPath && !strings.HasPrefix(path, strings.TrimSuffix(vm.MountPath, "/")+"/") {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name != vm.Name {
				continue
			}
			if v.PersistentVolumeClaim == nil || v.PersistentVolumeClaim.ClaimName != m.pvc.Name {
				t.Fatalf("%s: volume %s is not the claim %s", what, v.Name, m.pvc.Name)
			}
			if !slices.Contains(m.pvc.Spec.AccessModes, corev1.ReadWriteMany) {
				t.Fatalf("claim %s: access modes %v, want ReadWriteMany (pods on several nodes write to it)", m.pvc.Name, m.pvc.Spec.AccessModes)
			}
			return vm
		}
		t.Fatalf("%s: mount %s names no volume", what, vm.Name)
	}
	t.Fatalf("%s: %s is on no mounted volume", what, path)
	return corev1.VolumeMount{}
}

// TestReportJobReadsTheRun checks the merge step: the report Job reads the
// directory the shards write to, of the same run id, on the same claim, and
// waits, suspended, until it is started after the shards.
func TestReportJobReadsTheRun(t *testing.T) {
	for _, dir := range dirs {
		t.Run(dir, func(t *testing.T) {
			m := render(t, dir)
			rs := m.report.Spec
			if rs.CompletionMode != nil && *rs.CompletionMode == batchv1.IndexedCompletion || rs.Completions != nil && *rs.Completions != 1 {
				t.Errorf("the report Job is one pod")
			}
			if rs.BackoffLimit == nil || *rs.BackoffLimit != 0 {
				t.Errorf("report Job: backoffLimit must be 0")
			}
			if rs.Suspend == nil || !*rs.Suspend {
				t.Errorf("report Job: applied with the run, it must be suspended, or it reports before the shards have written")
			}
			c := only(t, "report", rs.Template.Spec)
			if len(c.Args) < 2 || c.Args[0] != "report" {
				t.Fatalf("report args %q, want closeload report", c.Args)
			}
			dir := c.Args[len(c.Args)-1]
			jc := m.job.Spec.Template.Spec.Containers[0]
			if want := filepath.Dir(flagValue(t, jc.Args, "out")); dir != want {
				t.Errorf("report reads %q, want the shards' directory %q", dir, want)
			}
			if got, want := envSource(c, "RUN_ID"), envSource(jc, "RUN_ID"); got != want || got == "" {
				t.Errorf("report's RUN_ID from %q, the job's from %q: want one source", got, want)
			}
			if c.Image != jc.Image {
				t.Errorf("report image %q, shards' %q: want one image", c.Image, jc.Image)
			}
			sharedMount(t, m, "report", rs.Template.Spec, c, dir)
		})
	}
}

// readEnvFile reads a configMapGenerator env file: KEY=VALUE lines.
func readEnvFile(t *testing.T, name string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: %q is not KEY=VALUE", name, line)
		}
		out[k] = v
	}
	return out
}

// runSettings checks what an overlay set: the shard count, the run's
// settings as the pods read them, and the image of both Jobs.
func runSettings(t *testing.T, m manifests, shards int, data map[string]string, image string) {
	t.Helper()
	js := m.job.Spec
	if int(*js.Completions) != shards || int(*js.Parallelism) != shards {
		t.Errorf("completions %d, parallelism %d, want %d", *js.Completions, *js.Parallelism, shards)
	}
	c := only(t, "job", js.Template.Spec)
	if got := flagValue(t, podArgs(t, m, c, shards-1, nil, "/results"), "shard"); got != fmt.Sprintf("%d/%d", shards-1, shards) {
		t.Errorf("last pod: --shard %s, want %d/%d", got, shards-1, shards)
	}
	for k, v := range data {
		if m.config.Data[k] != v {
			t.Errorf("ConfigMap %s: %s=%q, want %q", m.config.Name, k, m.config.Data[k], v)
		}
	}
	for _, ct := range []corev1.Container{c, only(t, "report", m.report.Spec.Template.Spec)} {
		if ct.Image != image {
			t.Errorf("container %s: image %q, want %q", ct.Name, ct.Image, image)
		}
	}
}

// TestOverlayExample renders the example overlay and checks that it changed
// what it says it changes, from the base's values.
func TestOverlayExample(t *testing.T) {
	base := load(t)
	runSettings(t, base, 4, map[string]string{"SHARDS": "4", "TARGET": "unset", "START_AT": "unset", "RUN_ID": "unset"}, "closeload:dev")
	run := readEnvFile(t, "example/run.env")
	if run["START_AT"] == "" || run["RUN_ID"] == "" {
		t.Fatalf("example/run.env sets %v, want START_AT and RUN_ID", run)
	}
	run["SHARDS"], run["TARGET"] = "8", "10.0.3.7:9000"
	runSettings(t, render(t, "example"), 8, run, "registry.example.com/closeload:v0.9.0")
}

// TestOverlaySetsTheRun writes an overlay as a user would, with other
// values than the example's, and checks the render has them: the shard
// count, target, start time, run id and image come from kustomize alone.
func TestOverlaySetsTheRun(t *testing.T) {
	tests := []struct {
		name   string
		shards int
		target string
		image  string // images: newName and newTag
	}{
		{"three shards", 3, "192.0.2.10:8080", "ghcr.io/someone/closeload:1.2.3"},
		{"sixteen shards", 16, "[2001:db8::7]:9000", "closeload:canary"},
	}
	base, err := filepath.Abs("base")
	if err != nil {
		t.Fatal(err)
	}
	shardsComponent, err := filepath.Abs("components/shards")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			// kustomize takes other kustomizations by relative path only.
			baseRel, err := filepath.Rel(dir, base)
			if err != nil {
				t.Fatal(err)
			}
			shardsRel, err := filepath.Rel(dir, shardsComponent)
			if err != nil {
				t.Fatal(err)
			}
			name, tag, _ := strings.Cut(tc.image[strings.LastIndexByte(tc.image, '/')+1:], ":")
			name = tc.image[:strings.LastIndexByte(tc.image, '/')+1] + name
			startAt := "2027-01-15T08:30:00Z"
			runID := "k8s-" + strings.ReplaceAll(tc.name, " ", "-")
			k := fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - %s
configMapGenerator:
  - name: closeload-run
    behavior: merge
    literals:
      - SHARDS=%d
      - TARGET=%s
    envs:
      - run.env
components:
  - %s
images:
  - name: closeload
    newName: %s
    newTag: %q
`, baseRel, tc.shards, tc.target, shardsRel, name, tag)
			env := fmt.Sprintf("START_AT=%s\nRUN_ID=%s\n", startAt, runID)
			for file, text := range map[string]string{"kustomization.yaml": k, "run.env": env} {
				if err := os.WriteFile(filepath.Join(dir, file), []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			m := render(t, dir)
			runSettings(t, m, tc.shards, map[string]string{
				"SHARDS": strconv.Itoa(tc.shards), "TARGET": tc.target, "START_AT": startAt, "RUN_ID": runID,
			}, tc.image)
			checkShardWiring(t, m)
		})
	}
}

// safeSysctls is Kubernetes' safe set (kubernetes.io/docs/tasks/
// administer-cluster/sysctl-cluster): a pod may set these without the
// kubelet's --allowed-unsafe-sysctls, from the version given (0 = always).
// Everything else, net.ipv4.tcp_tw_reuse included, is unsafe by default.
var safeSysctls = map[string]string{
	"kernel.shm_rmid_forced":              "",
	"net.ipv4.ip_local_port_range":        "",
	"net.ipv4.tcp_syncookies":             "",
	"net.ipv4.ping_group_range":           "1.18",
	"net.ipv4.ip_unprivileged_port_start": "1.22",
	"net.ipv4.ip_local_reserved_ports":    "1.27",
	"net.ipv4.tcp_keepalive_time":         "1.29",
	"net.ipv4.tcp_fin_timeout":            "1.29",
	"net.ipv4.tcp_keepalive_intvl":        "1.29",
	"net.ipv4.tcp_keepalive_probes":       "1.29",
	"net.ipv4.tcp_rmem":                   "1.32",
	"net.ipv4.tcp_wmem":                   "1.32",
}

// TestJobSysctls checks the pod's sysctls: in Kubernetes' safe set (so the
// pod is admitted on a default kubelet) and well-formed for closeload's own
// registry, which records them.
func TestJobSysctls(t *testing.T) {
	m := load(t)
	sc := m.job.Spec.Template.Spec.SecurityContext
	if sc == nil || len(sc.Sysctls) == 0 {
		t.Fatalf("the Job sets no pod sysctl; it widens ip_local_port_range")
	}
	for _, s := range sc.Sysctls {
		since, ok := safeSysctls[s.Name]
		if !ok {
			t.Errorf("sysctl %s is not in Kubernetes' safe set: pods would be rejected unless every node's kubelet allows it", s.Name)
		}
		if since != "" {
			t.Logf("sysctl %s is safe since Kubernetes %s", s.Name, since)
		}
		if _, err := sysctl.ParseAssignment(s.Name+"="+s.Value, false); err != nil {
			t.Errorf("sysctl %s=%q: %v", s.Name, s.Value, err)
		}
	}
}

// podArgs returns a container's arguments as the kubelet would pass them to
// the pod of the given index, with the ConfigMap's values (overridden by
// set) and the results mount moved to dir.
func podArgs(t *testing.T, m manifests, c corev1.Container, index int, set map[string]string, dir string) []string {
	t.Helper()
	env := map[string]string{}
	for _, e := range c.Env {
		switch src := envSource(c, e.Name); {
		case src == "field "+indexAnnotation:
			env[e.Name] = strconv.Itoa(index)
		case strings.HasPrefix(src, "configmap "):
			ref := e.ValueFrom.ConfigMapKeyRef
			if ref.Name != m.config.Name {
				t.Fatalf("variable %s reads ConfigMap %s, which the manifests do not make", e.Name, ref.Name)
			}
			v, ok := set[ref.Key]
			if !ok {
				v, ok = m.config.Data[ref.Key]
			}
			if !ok {
				t.Fatalf("variable %s: ConfigMap %s has no key %s", e.Name, ref.Name, ref.Key)
			}
			env[e.Name] = v
		case strings.HasPrefix(src, "value "):
			env[e.Name] = e.Value
		default:
			t.Fatalf("variable %s from %q: the test does not know that source", e.Name, src)
		}
	}
	var out []string
	for _, a := range c.Args {
		x, undefined := expand(a, env)
		if len(undefined) > 0 {
			t.Fatalf("argument %q: undefined %v", a, undefined)
		}
		for _, vm := range c.VolumeMounts {
			mp := strings.TrimSuffix(vm.MountPath, "/")
			if x == mp || strings.HasPrefix(x, mp+"/") {
				x = dir + x[len(mp):]
			}
		}
		out = append(out, x)
	}
	return out
}
