package sysctl

// SetHostDir points the host lock (and nothing else) at dir, so that tests
// never contend with real host-mode runs for /run/closeload.
func SetHostDir(dir string) { hostDir = dir }

// Abandon drops the host lock and the signal handler without restoring
// anything, as kill -9 of the run would: the journal stays.
func (j *Journal) Abandon() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.stopSig != nil {
		j.stopSig()
	}
	j.done = true
	j.lock.unlock()
}
