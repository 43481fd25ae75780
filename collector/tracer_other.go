//go:build !linux

package collector

import (
	"fmt"

	"github.com/closeload/closeload/results"
)

// Tracer is the kernel-event tracer; it exists on Linux only.
type Tracer struct{}

// OpenTracer always fails off Linux.
func OpenTracer(cfg TracerConfig) (*Tracer, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("%w: eBPF is Linux only", ErrTracerUnavailable)
}

// Census is never reached off Linux.
func (t *Tracer) Census() (TracerCensus, error) {
	return TracerCensus{}, fmt.Errorf("%w: eBPF is Linux only", ErrTracerUnavailable)
}

// Totals is never reached off Linux.
func (t *Tracer) Totals() ([]TracerTotals, error) {
	return nil, fmt.Errorf("%w: eBPF is Linux only", ErrTracerUnavailable)
}

// Read is never reached off Linux.
func (t *Tracer) Read() (*results.KernelEvents, error) {
	return nil, fmt.Errorf("%w: eBPF is Linux only", ErrTracerUnavailable)
}

// Close does nothing off Linux.
func (t *Tracer) Close() error { return nil }
