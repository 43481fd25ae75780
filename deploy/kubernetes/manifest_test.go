package kubernetes_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/closeload/closeload/sysctl"
)

// The manifests, as far as the test reads them. Unknown fields are ignored
// on purpose (a manifest has many); every field the shard wiring depends on
// is a pointer or is checked non-empty, and decode refuses a key that only
// matches a field ignoring case, so a misspelt key fails the test.
type object struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metadata          `json:"metadata"`
	Data       map[string]string `json:"data"`
	Spec       json.RawMessage   `json:"spec"`
	Items      []json.RawMessage `json:"items"`
}

type metadata struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels"`
}

type pvcSpec struct {
	AccessModes []string `json:"accessModes"`
}

type jobSpec struct {
	CompletionMode       string `json:"completionMode"`
	Completions          *int   `json:"completions"`
	Parallelism          *int   `json:"parallelism"`
	BackoffLimit         *int   `json:"backoffLimit"`
	BackoffLimitPerIndex *int   `json:"backoffLimitPerIndex"`
	MaxFailedIndexes     *int   `json:"maxFailedIndexes"`
	PodReplacementPolicy string `json:"podReplacementPolicy"`
	Template             struct {
		Metadata metadata `json:"metadata"`
		Spec     podSpec  `json:"spec"`
	} `json:"template"`
}

type podSpec struct {
	RestartPolicy   string `json:"restartPolicy"`
	HostNetwork     bool   `json:"hostNetwork"`
	SecurityContext struct {
		Sysctls []struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		} `json:"sysctls"`
	} `json:"securityContext"`
	Containers []container `json:"containers"`
	Volumes    []struct {
		Name                  string `json:"name"`
		PersistentVolumeClaim *struct {
			ClaimName string `json:"claimName"`
		} `json:"persistentVolumeClaim"`
	} `json:"volumes"`
}

type container struct {
	Name         string        `json:"name"`
	Image        string        `json:"image"`
	Command      []string      `json:"command"`
	Args         []string      `json:"args"`
	Env          []envVar      `json:"env"`
	EnvFrom      []any         `json:"envFrom"`
	VolumeMounts []volumeMount `json:"volumeMounts"`
}

type volumeMount struct {
	Name      string `json:"name"`
	MountPath string `json:"mountPath"`
	ReadOnly  bool   `json:"readOnly"`
}

type envVar struct {
	Name      string `json:"name"`
	Value     string `json:"value"`
	ValueFrom *struct {
		FieldRef *struct {
			FieldPath string `json:"fieldPath"`
		} `json:"fieldRef"`
		ConfigMapKeyRef *struct {
			Name string `json:"name"`
			Key  string `json:"key"`
		} `json:"configMapKeyRef"`
	} `json:"valueFrom"`
}

// manifests is what the two files hold.
type manifests struct {
	config  object // the ConfigMap every pod reads TARGET, START_AT, RUN_ID from
	pvc     object
	pvcSpec pvcSpec
	job     object
	jobSpec jobSpec
	report  object
	repSpec jobSpec
}

func readJSON(t *testing.T, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	decode(t, name, b, v)
}

// spelling reports keys of raw that match a field of typ only the way
// encoding/json matches them, ignoring case: kubectl would reject or drop
// "backoffLimitPerindex", so the test must not read it as the real field.
func spelling(path string, raw json.RawMessage, typ reflect.Type) []string {
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	if typ == reflect.TypeFor[json.RawMessage]() {
		return nil // decoded, and checked, on its own
	}
	var bad []string
	switch typ.Kind() {
	case reflect.Slice:
		var items []json.RawMessage
		if json.Unmarshal(raw, &items) == nil {
			for i, it := range items {
				bad = append(bad, spelling(fmt.Sprintf("%s[%d]", path, i), it, typ.Elem())...)
			}
		}
	case reflect.Struct:
		var obj map[string]json.RawMessage
		if json.Unmarshal(raw, &obj) != nil {
			return nil
		}
		fields := map[string]reflect.StructField{}
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			fields[strings.ToLower(name)] = f
		}
		for key, v := range obj {
			f, ok := fields[strings.ToLower(key)]
			if !ok {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if key != name {
				bad = append(bad, fmt.Sprintf("%s.%s: want %s", path, key, name))
				continue
			}
			bad = append(bad, spelling(path+"."+key, v, f.Type)...)
		}
	}
	return bad
}

// decode decodes raw into v, failing on a key spelt with the wrong case.
func decode(t *testing.T, what string, raw json.RawMessage, v any) {
	t.Helper()
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if bad := spelling(what, raw, reflect.TypeOf(v)); len(bad) > 0 {
		t.Fatalf("misspelt keys: %s", strings.Join(bad, "; "))
	}
}

func load(t *testing.T) manifests {
	t.Helper()
	var m manifests
	var list object
	readJSON(t, "closeload-job.json", &list)
	if list.APIVersion != "v1" || list.Kind != "List" {
		t.Fatalf("closeload-job.json: %s %s, want a v1 List", list.APIVersion, list.Kind)
	}
	for i, raw := range list.Items {
		var o object
		decode(t, fmt.Sprintf("closeload-job.json items[%d]", i), raw, &o)
		switch o.APIVersion + " " + o.Kind {
		case "v1 ConfigMap":
			m.config = o
		case "v1 PersistentVolumeClaim":
			m.pvc = o
			decode(t, "PersistentVolumeClaim spec", o.Spec, &m.pvcSpec)
		case "batch/v1 Job":
			m.job = o
			decode(t, "Job spec", o.Spec, &m.jobSpec)
		default:
			t.Fatalf("closeload-job.json item %d: unexpected %s %s", i, o.APIVersion, o.Kind)
		}
	}
	if m.config.Kind == "" || m.pvc.Kind == "" || m.job.Kind == "" {
		t.Fatalf("closeload-job.json must hold a ConfigMap, a PersistentVolumeClaim and a Job")
	}
	readJSON(t, "closeload-report.json", &m.report)
	if m.report.APIVersion != "batch/v1" || m.report.Kind != "Job" {
		t.Fatalf("closeload-report.json: %s %s, want a batch/v1 Job", m.report.APIVersion, m.report.Kind)
	}
	decode(t, "report Job spec", m.report.Spec, &m.repSpec)
	return m
}

// only returns the pod's one container.
func only(t *testing.T, what string, p podSpec) container {
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
func envSource(c container, name string) string {
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

// TestJobShardWiring checks the Indexed Job: one pod per shard, the pod's
// completion index is its --shard index, the shard count is the Job's
// completions, and --start-at and --run-id are the same for every pod.
func TestJobShardWiring(t *testing.T) {
	m := load(t)
	js := m.jobSpec
	if js.CompletionMode != "Indexed" {
		t.Errorf("completionMode %q, want Indexed", js.CompletionMode)
	}
	if js.Completions == nil || js.Parallelism == nil {
		t.Fatalf("completions and parallelism must both be set")
	}
	n := *js.Completions
	if n < 2 || *js.Parallelism != n {
		t.Errorf("completions %d, parallelism %d: want equal and at least 2 (all shards at once)", n, *js.Parallelism)
	}
	if js.BackoffLimitPerIndex == nil || *js.BackoffLimitPerIndex != 0 {
		t.Errorf("backoffLimitPerIndex must be 0: a retried shard would start after --start-at and not overlap the others")
	}
	if js.MaxFailedIndexes != nil {
		t.Errorf("maxFailedIndexes must be unset: one failed shard must not stop the others (the report flags it missing)")
	}
	if js.PodReplacementPolicy != "Failed" {
		t.Errorf("podReplacementPolicy %q, want Failed", js.PodReplacementPolicy)
	}
	pod := js.Template.Spec
	if pod.RestartPolicy != "Never" {
		t.Errorf("restartPolicy %q, want Never: a restarted container would run its shard a second time", pod.RestartPolicy)
	}
	if pod.HostNetwork {
		t.Errorf("hostNetwork: pods would share the node's ports and sysctls")
	}
	c := only(t, "job", pod)
	if len(c.Args) == 0 || c.Args[0] != "run" {
		t.Fatalf("job args %q, want closeload run", c.Args)
	}

	// index → --shard, completions = shard count.
	shard := flagValue(t, c.Args, "shard")
	if want := fmt.Sprintf("$(JOB_COMPLETION_INDEX)/%d", n); shard != want {
		t.Errorf("--shard %q, want %q (completions = %d)", shard, want, n)
	}
	if src := envSource(c, "JOB_COMPLETION_INDEX"); src != "field "+indexAnnotation {
		t.Errorf("JOB_COMPLETION_INDEX from %q, want the downward API's %s", src, indexAnnotation)
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
		want := "configmap " + m.config.Metadata.Name + "/" + ref[1]
		if src != want {
			t.Errorf("--%s: %s comes from %q, want %q", flag, ref[1], src, want)
		}
		if _, ok := m.config.Data[ref[1]]; !ok {
			t.Errorf("ConfigMap %s has no key %s", m.config.Metadata.Name, ref[1])
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
// the ReadWriteMany claim of the manifest.
func sharedMount(t *testing.T, m manifests, what string, pod podSpec, c container, path string) volumeMount {
	t.Helper()
	for _, vm := range c.VolumeMounts {
		if path != vm.MountPath && !strings.HasPrefix(path, strings.TrimSuffix(vm.MountPath, "/")+"/") {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name != vm.Name {
				continue
			}
			if v.PersistentVolumeClaim == nil || v.PersistentVolumeClaim.ClaimName != m.pvc.Metadata.Name {
				t.Fatalf("%s: volume %s is not the claim %s", what, v.Name, m.pvc.Metadata.Name)
			}
			rwx := false
			for _, am := range m.pvcSpec.AccessModes {
				rwx = rwx || am == "ReadWriteMany"
			}
			if !rwx {
				t.Fatalf("claim %s: access modes %v, want ReadWriteMany (pods on several nodes write to it)", m.pvc.Metadata.Name, m.pvcSpec.AccessModes)
			}
			return vm
		}
		t.Fatalf("%s: mount %s names no volume", what, vm.Name)
	}
	t.Fatalf("%s: %s is on no mounted volume", what, path)
	return volumeMount{}
}

// TestReportJobReadsTheRun checks the merge step: the report Job reads the
// directory the shards write to, of the same run id, on the same claim.
func TestReportJobReadsTheRun(t *testing.T) {
	m := load(t)
	rs := m.repSpec
	if rs.CompletionMode == "Indexed" || (rs.Completions != nil && *rs.Completions != 1) {
		t.Errorf("the report Job is one pod")
	}
	if rs.BackoffLimit == nil || *rs.BackoffLimit != 0 {
		t.Errorf("report Job: backoffLimit must be 0")
	}
	c := only(t, "report", rs.Template.Spec)
	if len(c.Args) < 2 || c.Args[0] != "report" {
		t.Fatalf("report args %q, want closeload report", c.Args)
	}
	dir := c.Args[len(c.Args)-1]
	jc := m.jobSpec.Template.Spec.Containers[0]
	if want := filepath.Dir(flagValue(t, jc.Args, "out")); dir != want {
		t.Errorf("report reads %q, want the shards' directory %q", dir, want)
	}
	if got, want := envSource(c, "RUN_ID"), envSource(jc, "RUN_ID"); got != want || got == "" {
		t.Errorf("report's RUN_ID from %q, the job's from %q: want one source", got, want)
	}
	sharedMount(t, m, "report", rs.Template.Spec, c, dir)
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
	for _, s := range m.jobSpec.Template.Spec.SecurityContext.Sysctls {
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
func podArgs(t *testing.T, m manifests, c container, index int, set map[string]string, dir string) []string {
	t.Helper()
	env := map[string]string{}
	for _, e := range c.Env {
		switch src := envSource(c, e.Name); {
		case src == "field "+indexAnnotation:
			env[e.Name] = strconv.Itoa(index)
		case strings.HasPrefix(src, "configmap "):
			key := e.ValueFrom.ConfigMapKeyRef.Key
			v, ok := set[key]
			if !ok {
				v = m.config.Data[key]
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
