package verify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"golang.org/x/sys/unix"
)

var claimHalfCloseReceive = Claim{
	Name:      "halfclose-receive",
	Statement: "After CloseWrite, the local side still receives everything the peer sends: a large response written after the half-close arrives whole.",
	Source:    "seed article §1 (CloseWrite 后仍可接收数据)",
	Run:       runHalfCloseReceive,
}

// responseSize is large enough to need many segments and several window
// updates after the half-close.
const responseSize = 8 << 20

// runHalfCloseReceive: the client sends a request and half-closes; the
// server reads to EOF, then streams 8 MiB of pseudo-random bytes and closes.
// The client's socket state is sampled while the response is in flight.
func runHalfCloseReceive(ctx context.Context, env *Env) Result {
	var r Result
	ln, err := listen(0)
	if err != nil {
		return failed(r, err)
	}
	defer ln.Close()
	c, s, err := pair(ctx, ln)
	if err != nil {
		return failed(r, err)
	}
	defer c.Close()
	type served struct {
		reqBytes int64
		sum      [32]byte
		err      error
	}
	done := make(chan served, 1)
	go func() {
		defer s.Close()
		n, err := readAll(s, 10*time.Second)
		if err != nil {
			done <- served{err: fmt.Errorf("server reading the request: %w", err)}
			return
		}
		h := sha256.New()
		src := rand.New(rand.NewPCG(1, 2))
		buf := make([]byte, 64<<10)
		_ = s.SetWriteDeadline(time.Now().Add(20 * time.Second))
		for sent := 0; sent < responseSize; sent += len(buf) {
			for i := range buf {
				buf[i] = byte(src.Uint32())
			}
			h.Write(buf)
			if _, err := s.Write(buf); err != nil {
				done <- served{err: fmt.Errorf("server writing the response: %w", err)}
				return
			}
		}
		var sv served
		sv.reqBytes = n
		copy(sv.sum[:], h.Sum(nil))
		done <- sv
	}()

	req := bytes.Repeat([]byte("GET / HTTP/1.0\r\n"), 64)
	if _, err := c.Write(req); err != nil {
		return failed(r, err)
	}
	cwErr := c.CloseWrite()
	cport := portOf(c.LocalAddr())
	self := func(s Socket) bool { return s.Local.Port() == cport }

	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	h := sha256.New()
	first := make([]byte, 1)
	n0, rerr := io.ReadFull(c, first)
	h.Write(first[:n0])
	_, during := env.statesOr(self)
	var got int64
	var endErr error
	if rerr == nil {
		got, endErr = io.Copy(h, c)
		got += int64(n0)
		if endErr == nil {
			endErr = io.EOF // io.Copy hides the EOF that ended it
		}
	} else {
		endErr = rerr
	}
	sv := <-done
	if sv.err != nil {
		return failed(r, sv.err)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	// The server closed after the response: the client, half-closed first,
	// now holds TIME_WAIT.
	var after string
	waitUntil(ctx, time.Second, func() bool {
		m, st := env.statesOr(self)
		after = st
		return m["TIME_WAIT"] == 1
	})

	r.add("client CloseWrite", "%s; request of %d bytes read by the server up to EOF", errName(cwErr), sv.reqBytes)
	r.add("client socket while the response streamed", "%s", during)
	r.add("response", "%d bytes sent after the half-close, %d received, sha256 %s", responseSize, got, matchWord(sum == sv.sum))
	r.add("client's read ended with", "%s", errName(endErr))
	r.add("client socket after the server's close", "%s", after)
	switch {
	case got == responseSize && sum == sv.sum && errors.Is(endErr, io.EOF):
		r.Verdict = Holds
		r.Finding = fmt.Sprintf("all %d bytes the peer sent after the half-close arrived intact, then EOF; the half-closed socket sat in FIN_WAIT2 meanwhile", responseSize)
	default:
		r.Verdict = DoesNotHold
		r.Finding = fmt.Sprintf("only %d of %d bytes arrived intact (read ended with %s)", got, responseSize, errName(endErr))
	}
	return r
}

func matchWord(ok bool) string {
	if ok {
		return "matches"
	}
	return "DIFFERS"
}

var claimEOFAndWriteAfterCloseWrite = Claim{
	Name:      "halfclose-eof-epipe",
	Statement: "Read returns (0, EOF) once the peer has half-closed; Write after one's own CloseWrite fails.",
	Source:    "seed article §3.1–3.2 (read 返回 0 / -1; 写入已半关闭的输出流抛出异常)",
	Run:       runEOFAndWriteAfterCloseWrite,
}

// runEOFAndWriteAfterCloseWrite: the client writes and half-closes. The
// server reads the data, then reads twice more (EOF, and EOF again), then
// still writes a reply. The client writes after its own CloseWrite.
func runEOFAndWriteAfterCloseWrite(ctx context.Context, env *Env) Result {
	var r Result
	ln, err := listen(0)
	if err != nil {
		return failed(r, err)
	}
	defer ln.Close()
	c, s, err := pair(ctx, ln)
	if err != nil {
		return failed(r, err)
	}
	defer c.Close()
	defer s.Close()

	if _, err := c.Write([]byte("hello")); err != nil {
		return failed(r, err)
	}
	cwErr := c.CloseWrite()
	buf := make([]byte, 64)
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	var data int
	var n1, n2 int
	var e1, e2 error
	for data < 5 { // the 5 bytes may come in pieces
		n, err := s.Read(buf)
		data += n
		if err != nil {
			e1, n1 = err, n
			break
		}
	}
	if e1 == nil {
		n1, e1 = s.Read(buf)
	}
	n2, e2 = s.Read(buf)

	// The half-closed peer can still be written to.
	_, replyErr := s.Write([]byte("reply"))
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	nr, _ := io.ReadFull(c, buf[:5])

	// Write after one's own CloseWrite, through Go and at the syscall level.
	_, wErr := c.Write([]byte("more"))
	var rawErr error
	_ = rawFd(c, func(fd int) error {
		_, rawErr = unix.Write(fd, []byte("x"))
		return nil
	})

	r.add("client CloseWrite", "%s", errName(cwErr))
	r.add("server Read after the 5 data bytes", "n=%d err=%s; next Read n=%d err=%s", n1, errName(e1), n2, errName(e2))
	r.add("server Write after reading EOF", "err=%s; client received %d of 5 bytes", errName(replyErr), nr)
	r.add("client Write after its own CloseWrite", "Go: %s; write(2): %s", errName(wErr), errName(rawErr))
	eofOK := n1 == 0 && errors.Is(e1, io.EOF) && n2 == 0 && errors.Is(e2, io.EOF) && data == 5
	writeFails := wErr != nil && rawErr != nil
	switch {
	case eofOK && writeFails:
		r.Verdict = Holds
		r.Finding = fmt.Sprintf("after the data, Read returned (0, EOF) and again (0, EOF); Write after CloseWrite failed with %s; the peer could still write back", errName(wErr))
	case !eofOK:
		r.Verdict = DoesNotHold
		r.Finding = fmt.Sprintf("Read after the peer's half-close returned n=%d err=%s", n1, errName(e1))
	default:
		r.Verdict = DoesNotHold
		r.Finding = fmt.Sprintf("Write after CloseWrite returned %s", errName(wErr))
	}
	return r
}
