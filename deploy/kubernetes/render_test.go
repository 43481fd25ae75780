package kubernetes_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// manifests is what one kustomization renders, decoded into the Kubernetes
// API types.
type manifests struct {
	config corev1.ConfigMap // the run's settings every pod reads
	pvc    corev1.PersistentVolumeClaim
	job    batchv1.Job // the shards
	report batchv1.Job // the merge, started when the shards have ended
}

// errLost marks a manifest key the API type does not read back: a key spelt
// with the wrong case, which encoding/json matches anyway and kubectl
// would reject or drop.
var errLost = errors.New("key not read by the API type")

// decodeStrict decodes one rendered object into v, refusing unknown fields
// (sigs.k8s.io/yaml's strict mode) and any key that does not come back when
// v is encoded again.
func decodeStrict(raw []byte, v any) error {
	if err := yaml.UnmarshalStrict(raw, v); err != nil {
		return err
	}
	back, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var orig, round any
	if err := yaml.Unmarshal(raw, &orig); err != nil {
		return err
	}
	if err := json.Unmarshal(back, &round); err != nil {
		return err
	}
	if lost := lostKeys("", orig, round); len(lost) > 0 {
		return fmt.Errorf("%w: %v", errLost, lost)
	}
	return nil
}

// lostKeys returns the paths of orig that round does not hold with the
// same value.
func lostKeys(path string, orig, round any) []string {
	switch o := orig.(type) {
	case map[string]any:
		r, ok := round.(map[string]any)
		if !ok {
			return []string{path}
		}
		var lost []string
		for _, k := range slices.Sorted(maps.Keys(o)) {
			rv, ok := r[k]
			if !ok {
				lost = append(lost, path+"."+k)
				continue
			}
			lost = append(lost, lostKeys(path+"."+k, o[k], rv)...)
		}
		return lost
	case []any:
		r, ok := round.([]any)
		if !ok || len(r) != len(o) {
			return []string{path}
		}
		var lost []string
		for i := range o {
			lost = append(lost, lostKeys(fmt.Sprintf("%s[%d]", path, i), o[i], r[i])...)
		}
		return lost
	}
	if !reflect.DeepEqual(orig, round) {
		return []string{fmt.Sprintf("%s (%v, read back as %v)", path, orig, round)}
	}
	return nil
}

// render builds the kustomization in dir as `kubectl kustomize dir` does
// and decodes every object it makes, strictly, into its API type.
func render(t *testing.T, dir string) manifests {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var m manifests
	seen := map[string]bool{}
	for _, r := range rm.Resources() {
		raw, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		id := r.GetApiVersion() + " " + r.GetKind() + " " + r.GetName()
		if seen[id] {
			t.Fatalf("%s: %s twice", dir, id)
		}
		seen[id] = true
		var dst any
		switch id {
		case "v1 ConfigMap closeload-run":
			dst = &m.config
		case "v1 PersistentVolumeClaim closeload-results":
			dst = &m.pvc
		case "batch/v1 Job closeload":
			dst = &m.job
		case "batch/v1 Job closeload-report":
			dst = &m.report
		default:
			t.Fatalf("%s renders an unexpected %s", dir, id)
		}
		if err := decodeStrict(raw, dst); err != nil {
			t.Fatalf("%s: %s: %v\n%s", dir, id, err, raw)
		}
	}
	if len(seen) != 4 {
		t.Fatalf("%s renders %d objects, want the ConfigMap, the claim and the two Jobs", dir, len(seen))
	}
	return m
}

// load renders the base, as it is committed.
func load(t *testing.T) manifests {
	t.Helper()
	return render(t, "base")
}

// TestDecodeStrictRefuses checks that the decoding the manifest tests rely
// on fails on what kubectl would refuse or drop.
func TestDecodeStrictRefuses(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		lost bool // refused by the read-back check rather than the decoder
	}{
		{"unknown field", "apiVersion: batch/v1\nkind: Job\nspec:\n  completionz: 4\n", false},
		{"wrong case", "apiVersion: batch/v1\nkind: Job\nspec:\n  backoffLimitPerindex: 0\n", true},
		{"wrong type", "apiVersion: batch/v1\nkind: Job\nspec:\n  completions: four\n", false},
		{"duplicate key", "apiVersion: batch/v1\nkind: Job\nspec:\n  completions: 4\n  completions: 5\n", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var j batchv1.Job
			err := decodeStrict([]byte(tc.yaml), &j)
			if err == nil {
				t.Fatalf("accepted:\n%s", tc.yaml)
			}
			if errors.Is(err, errLost) != tc.lost {
				t.Errorf("refused by the wrong check: %v", err)
			}
		})
	}
	var j batchv1.Job
	if err := decodeStrict([]byte("apiVersion: batch/v1\nkind: Job\nspec:\n  completions: 4\n"), &j); err != nil || *j.Spec.Completions != 4 {
		t.Fatalf("a well-formed Job: %v", err)
	}
}

// TestKubectlKustomizeAgrees renders the kustomizations with kubectl's own
// kustomize too, where kubectl is installed, and checks it makes the same
// objects as the library the other tests use.
func TestKubectlKustomizeAgrees(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not installed; the other tests render with sigs.k8s.io/kustomize/api")
	}
	for _, dir := range []string{"base", "example"} {
		t.Run(dir, func(t *testing.T) {
			out, err := exec.Command(kubectl, "kustomize", dir).Output()
			if err != nil {
				t.Fatalf("kubectl kustomize %s: %v", dir, err)
			}
			var got manifests
			for i, doc := range strings.Split(string(out), "\n---\n") {
				var meta struct {
					Kind     string
					Metadata struct{ Name string }
				}
				if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
					t.Fatalf("document %d: %v", i, err)
				}
				var dst any
				switch meta.Kind + " " + meta.Metadata.Name {
				case "ConfigMap closeload-run":
					dst = &got.config
				case "PersistentVolumeClaim closeload-results":
					dst = &got.pvc
				case "Job closeload":
					dst = &got.job
				case "Job closeload-report":
					dst = &got.report
				default:
					t.Fatalf("kubectl kustomize %s makes an unexpected %s %s", dir, meta.Kind, meta.Metadata.Name)
				}
				if err := decodeStrict([]byte(doc), dst); err != nil {
					t.Fatalf("document %d: %v", i, err)
				}
			}
			if want := render(t, dir); !reflect.DeepEqual(got, want) {
				t.Errorf("kubectl kustomize %s differs from the library's render:\nkubectl: %+v\nlibrary: %+v", dir, got, want)
			}
		})
	}
}
