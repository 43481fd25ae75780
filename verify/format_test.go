package verify

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func sampleReport() Report {
	return Report{Kernel: "6.18.0", GoVersion: "go1.26", Cores: 2, Seconds: 12.3, Results: []Result{
		{Claim: "a-claim", Statement: "A | B", Source: "folklore", Verdict: Holds, Finding: "it held",
			Evidence: []Evidence{{"counter", "TCPAbortOnClose +10"}}, Command: Command("a-claim"), Seconds: 1.5, Namespace: "isolated"},
		{Claim: "b-claim", Statement: "B", Source: "seed", Verdict: HoldsOnlyWhen, Condition: "the socket is orphaned",
			Finding: "orphans went", Command: Command("b-claim")},
		{Claim: "c-claim", Statement: "C", Source: "seed", Verdict: Inconclusive, Error: "no namespace", Command: Command("c-claim")},
	}}
}

func TestWrite(t *testing.T) {
	tests := []struct {
		format string
		want   []string
	}{
		{"text", []string{"CLAIM", "a-claim", "holds only when the socket is orphaned", "TCPAbortOnClose +10",
			"reproduce: closeload verify --claim a-claim", "error: no namespace", "3 claims in 12.3 s"}},
		{"markdown", []string{"| # | Claim | Verdict | Evidence | Reproduce |", "A \\| B", "it held<br>counter: TCPAbortOnClose +10",
			"`closeload verify --claim b-claim`", "holds only when the socket is orphaned"}},
		{"json", []string{`"verdict": "holds only when"`, `"condition": "the socket is orphaned"`, `"kernel": "6.18.0"`}},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			var b bytes.Buffer
			if err := Write(&b, tt.format, sampleReport()); err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, b.String())
				}
			}
		})
	}
	if err := Write(&bytes.Buffer{}, "xml", sampleReport()); err == nil {
		t.Error("unknown format accepted")
	}
}

func TestMarkdownOneRowPerClaim(t *testing.T) {
	var b bytes.Buffer
	rep := sampleReport()
	rep.Results[0].Evidence = append(rep.Results[0].Evidence, Evidence{"multi", "line\nbreak"})
	if err := WriteMarkdown(&b, rep); err != nil {
		t.Fatal(err)
	}
	rows := 0
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(l, "| ") && !strings.HasPrefix(l, "| #") {
			rows++
		}
	}
	if rows != len(rep.Results) {
		t.Fatalf("%d table rows for %d results:\n%s", rows, len(rep.Results), b.String())
	}
}

func TestJSONRoundTrip(t *testing.T) {
	var b bytes.Buffer
	if err := Write(&b, "json", sampleReport()); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Results) != 3 || back.Results[1].Condition != "the socket is orphaned" {
		t.Fatalf("round trip lost data: %+v", back)
	}
}
