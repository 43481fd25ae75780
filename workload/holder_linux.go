package workload

import (
	"sync"
	"time"
)

// holder keeps connections open for a fixed time and then closes them, with
// one goroutine for all of them: the hold scenarios (orphan-finwait2,
// close-wait-leak) and storms pile up thousands of connections, which must
// not cost a goroutine each. Since every connection is held for the same
// time, deadlines arrive in order and a FIFO suffices.
type holder struct {
	mu       sync.Mutex
	cond     *sync.Cond
	queue    []heldConn
	head     int
	capacity int
	stopped  bool
	done     chan struct{}
	// waits and waited count the adds that found the holder full and the
	// time they waited (now() clock units).
	waits  uint64
	waited int64
	// onClose runs after a held descriptor is closed (counters).
	onClose func(heldConn)
}

type heldConn struct {
	fd       int
	deadline int64 // now() value
	tag      int   // mix index, for counters
}

func newHolder(capacity int, onClose func(heldConn)) *holder {
	h := &holder{capacity: capacity, done: make(chan struct{}), onClose: onClose}
	h.cond = sync.NewCond(&h.mu)
	go h.loop()
	return h
}

// add keeps fd until deadline. It blocks while the holder is full, which
// paces the workload to what descriptors allow; it returns false, closing
// fd, when the holder has stopped.
func (h *holder) add(c heldConn) bool {
	h.mu.Lock()
	if len(h.queue)-h.head >= h.capacity && !h.stopped {
		t0 := now()
		for len(h.queue)-h.head >= h.capacity && !h.stopped {
			h.cond.Wait()
		}
		h.waits++
		h.waited += now() - t0
	}
	if h.stopped {
		h.mu.Unlock()
		rawClose(c.fd)
		return false
	}
	wasEmpty := len(h.queue) == h.head
	h.queue = append(h.queue, c)
	h.mu.Unlock()
	if wasEmpty {
		h.cond.Broadcast()
	}
	return true
}

// held returns how many connections the holder keeps now.
func (h *holder) held() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.queue) - h.head
}

// holdWaits returns how often and how long adds waited for room.
func (h *holder) holdWaits() HoldWaits {
	h.mu.Lock()
	defer h.mu.Unlock()
	return HoldWaits{Count: h.waits, Total: time.Duration(h.waited)}
}

func (h *holder) loop() {
	defer close(h.done)
	var due []heldConn
	for {
		h.mu.Lock()
		for len(h.queue) == h.head && !h.stopped {
			h.cond.Wait()
		}
		if h.stopped {
			due = append(due[:0], h.queue[h.head:]...)
			h.queue, h.head = nil, 0
			h.mu.Unlock()
			h.closeAll(due)
			return
		}
		t := now()
		due = due[:0]
		for h.head < len(h.queue) && h.queue[h.head].deadline <= t {
			due = append(due, h.queue[h.head])
			h.head++
		}
		var wait time.Duration
		if h.head < len(h.queue) {
			wait = time.Duration(h.queue[h.head].deadline - t)
		}
		if h.head > 4096 && h.head*2 > len(h.queue) {
			h.queue = append(h.queue[:0], h.queue[h.head:]...)
			h.head = 0
		}
		h.mu.Unlock()
		if len(due) > 0 {
			h.closeAll(due)
			h.cond.Broadcast()
		}
		if wait > 0 {
			h.sleep(wait)
		}
	}
}

// sleep waits for d, or less when the holder stops.
func (h *holder) sleep(d time.Duration) {
	if d > 50*time.Millisecond {
		d = 50 * time.Millisecond
	}
	time.Sleep(d)
}

func (h *holder) closeAll(cs []heldConn) {
	for _, c := range cs {
		rawClose(c.fd)
		if h.onClose != nil {
			h.onClose(c)
		}
	}
}

// stop closes every held connection now and waits for the loop to end.
func (h *holder) stop() {
	h.mu.Lock()
	h.stopped = true
	h.mu.Unlock()
	h.cond.Broadcast()
	<-h.done
}
