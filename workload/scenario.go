// Package workload generates the load: the close choreographies of the
// scenario catalogue (client and built-in target halves), the shapes that
// pace connections, the worker pool, the port-aware dialer and the error
// classification. It records latencies through collector and knows nothing
// of reports.
package workload

import (
	"errors"
	"fmt"
	"strings"

	"github.com/closeload/closeload/internal/suggest"
)

// Scenario identifies one close choreography of the catalogue.
type Scenario int

// The catalogue, in the order the documentation lists it.
const (
	ClientHalfClose Scenario = iota
	ServerHalfClose
	Simultaneous
	FullClose
	Linger0
	UnreadClose
	OrphanFinWait2
	CloseWaitLeak
	StreamEcho
	numScenarios
)

// ScenarioInfo describes a scenario for `closeload scenarios`, help texts and
// reports.
type ScenarioInfo struct {
	Scenario Scenario `json:"-"`
	Name     string   `json:"name"`
	Client   string   `json:"client"`
	Target   string   `json:"target"`
	// TimeWaitOn says which side is expected to hold TIME_WAIT.
	TimeWaitOn string `json:"time_wait_on"`
	Shows      string `json:"shows"`
	// Holds is true when --hold matters to the scenario.
	Holds bool `json:"holds"`
	// ResetExpected is true when a reset is the scenario's normal ending
	// rather than an error.
	ResetExpected bool `json:"reset_expected"`
}

var catalogue = [numScenarios]ScenarioInfo{
	{ClientHalfClose, "client-halfclose", "write request; CloseWrite; read to EOF; Close", "read to EOF; write response; Close", "client", "the request/half-close/response idiom (HTTP/1.0, nc -N)", false, false},
	{ServerHalfClose, "server-halfclose", "read to EOF; write trailer; Close", "write response; CloseWrite; read to EOF; Close", "server", "server-first close", false, false},
	{Simultaneous, "simultaneous", "write; CloseWrite; read to EOF; Close", "same, concurrently", "both (CLOSING)", "simultaneous close", false, false},
	{FullClose, "full-close", "write; read response; Close (no half-close)", "read request; write response; read to EOF; Close", "client", "baseline without half-close", false, false},
	{Linger0, "linger0", "write; read response; SetLinger(0); Close", "read request; write response; read to EOF or error; Close", "nobody", "abortive close: RST, no TIME_WAIT", false, true},
	{UnreadClose, "unread-close", "write more than the target reads; read response", "read part of the request; write response; Close with unread data", "nobody", "close with unread data sends RST, response may be lost", false, true},
	{OrphanFinWait2, "orphan-finwait2", "CloseWrite; Close at once", "read to EOF; hold for --hold; Close", "client", "orphaned FIN_WAIT_2, reaped by tcp_fin_timeout", true, true},
	{CloseWaitLeak, "close-wait-leak", "CloseWrite; keep the connection for --hold; Close", "read to EOF; never close until --hold ends", "client", "CLOSE_WAIT pile-up on a leaky server, FIN_WAIT_2 on the client", true, false},
	{StreamEcho, "stream-echo", "stream --request-size bytes while reading the echo; CloseWrite; read to EOF; verify", "echo until EOF; Close", "client", "no byte is lost across a half-close (verified)", false, false},
}

// ErrUnknownScenario is returned for a name that is not in the catalogue.
var ErrUnknownScenario = errors.New("unknown scenario")

// Catalogue returns every scenario in catalogue order.
func Catalogue() []ScenarioInfo { return catalogue[:] }

// Info returns the catalogue entry of s.
func (s Scenario) Info() ScenarioInfo { return catalogue[s] }

// String returns the scenario's catalogue name.
func (s Scenario) String() string {
	if s < 0 || s >= numScenarios {
		return fmt.Sprintf("scenario(%d)", int(s))
	}
	return catalogue[s].Name
}

// ParseScenario finds a scenario by name; an unknown name gets an error
// naming the closest known one and listing all.
func ParseScenario(name string) (Scenario, error) {
	for _, c := range catalogue {
		if c.Name == name {
			return c.Scenario, nil
		}
	}
	names := make([]string, len(catalogue))
	for i, c := range catalogue {
		names[i] = c.Name
	}
	hint := ""
	if n := suggest.Nearest(name, names); n != "" {
		hint = fmt.Sprintf(" (did you mean %q?)", n)
	}
	return 0, fmt.Errorf("%w %q%s; known: %s", ErrUnknownScenario, name, hint, strings.Join(names, ", "))
}
