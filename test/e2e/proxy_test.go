package e2e

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// faultProxy forwards TCP between standbyd and the primary and injects
// network faults: a blackhole (the path stops forwarding without closing,
// as a dead router or a frozen host would), resets, and added latency.
type faultProxy struct {
	ln     net.Listener
	target string

	mu        sync.Mutex
	cond      *sync.Cond
	blackhole bool
	latency   time.Duration
	conns     map[net.Conn]bool
	wg        sync.WaitGroup
}

func startProxy(t *testing.T, target string) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *faultProxy) port() int { return p.ln.Addr().(*net.TCPAddr).Port }

func (p *faultProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[s] = true, true
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, s)
		go p.pipe(s, c)
	}
}

// pipe copies src to dst, holding data while the path is blackholed.
func (p *faultProxy) pipe(src, dst net.Conn) {
	defer p.wg.Done()
	defer func() {
		src.Close()
		dst.Close()
		p.mu.Lock()
		delete(p.conns, src)
		delete(p.conns, dst)
		p.mu.Unlock()
	}()
	buf := make([]byte, 32*1024)
	for {
		p.waitPass()
		n, err := src.Read(buf)
		if n > 0 {
			lat := p.waitPass()
			if lat > 0 {
				time.Sleep(lat)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				return
			}
			return
		}
	}
}

// waitPass blocks while the path is blackholed; it returns the latency.
func (p *faultProxy) waitPass() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.blackhole {
		p.cond.Wait()
	}
	return p.latency
}

func (p *faultProxy) setBlackhole(on bool) {
	p.mu.Lock()
	p.blackhole = on
	p.mu.Unlock()
	p.cond.Broadcast()
}

func (p *faultProxy) setLatency(d time.Duration) {
	p.mu.Lock()
	p.latency = d
	p.mu.Unlock()
}

// reset aborts every forwarded connection with a TCP RST.
func (p *faultProxy) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		c.Close()
	}
}

func (p *faultProxy) close() {
	p.ln.Close()
	p.setBlackhole(false)
	p.reset()
	p.wg.Wait()
}
