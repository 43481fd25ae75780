package workload

// Abort shuts down the connections in flight at once, without waiting for
// the grace period: the run was asked to stop now (a second Ctrl-C).
func (p *Pool) Abort() {
	p.stop.Store(true)
	p.forceStop()
}
