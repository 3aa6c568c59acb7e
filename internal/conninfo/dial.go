package conninfo

import (
	"context"
	"fmt"
	"net"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// sockopts are the socket options standbyd's dialer sets on TCP
// connections (libpq's setKeepalives* and TCP_USER_TIMEOUT).
type sockopts struct {
	keepalive bool
	idle      time.Duration // <0: the kernel's default
	interval  time.Duration
	count     int // <0: the kernel's default
	userTO    time.Duration
}

// sockopts works out the socket options: the string's values, else the
// channel's defaults (Options), else the kernel's.
func (p *parser) sockopts() sockopts {
	o := sockopts{keepalive: p.keepalivesOn(), idle: -1, interval: -1, count: -1}
	secs := func(kw string, def time.Duration) time.Duration {
		if p.isSet(kw) {
			n, _ := parseInt(p.get(kw))
			return time.Duration(n) * time.Second
		}
		if def > 0 {
			return def
		}
		return -1
	}
	o.idle = secs("keepalives_idle", p.opts.Keepalive.Idle)
	o.interval = secs("keepalives_interval", p.opts.Keepalive.Interval)
	if p.isSet("keepalives_count") {
		o.count, _ = parseInt(p.get("keepalives_count"))
	} else if p.opts.Keepalive.Count > 0 {
		o.count = p.opts.Keepalive.Count
	}
	if p.isSet("tcp_user_timeout") {
		n, _ := parseInt(p.get("tcp_user_timeout"))
		if n > 0 { // libpq: a negative value counts as 0, the kernel's default
			o.userTO = time.Duration(n) * time.Millisecond
		}
	} else if p.opts.TCPUserTimeout > 0 {
		o.userTO = p.opts.TCPUserTimeout
	}
	return o
}

func (o sockopts) dialer() *net.Dialer {
	d := &net.Dialer{}
	if o.keepalive {
		d.KeepAliveConfig = net.KeepAliveConfig{Enable: true, Idle: o.idle, Interval: o.interval, Count: o.count}
	} else {
		d.KeepAlive = -1 // with KeepAliveConfig.Enable false: off
	}
	ms := int(o.userTO / time.Millisecond)
	d.Control = func(network, _ string, c syscall.RawConn) error {
		if !strings.HasPrefix(network, "tcp") {
			return nil
		}
		var serr error
		err := c.Control(func(fd uintptr) {
			// Always set, so that 0 (the kernel's default) is explicit.
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, ms)
		})
		if err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("setsockopt(TCP_USER_TIMEOUT) failed: %w", serr)
		}
		return nil
	}
	return d
}

// dialFunc is the pgconn DialFunc: the dialer above, then requirepeer on
// Unix sockets. pgconn bounds each attempt with its context.
func (p *parser) dialFunc() func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := p.sockopts().dialer()
	peer := p.get("requirepeer")
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if peer != "" && network == "unix" {
			if err := checkPeer(c, peer); err != nil {
				c.Close()
				return nil, err
			}
		}
		return c, nil
	}
}

// lookupFunc replaces pgconn's host lookup for hosts given a hostaddr: the
// name stays the name (TLS, SNI, passfile, messages) and the address is
// dialled without DNS. A name listed with several hostaddrs gets them all.
func (p *parser) lookupFunc(next func(context.Context, string) ([]string, error)) func(context.Context, string) ([]string, error) {
	m := map[string][]string{}
	for _, t := range p.targets {
		if t.addr != "" && t.dialHost() == t.host {
			m[t.host] = append(m[t.host], t.addr)
		}
	}
	if len(m) == 0 {
		return next
	}
	return func(ctx context.Context, host string) ([]string, error) {
		if a, ok := m[host]; ok {
			return append([]string(nil), a...), nil
		}
		return next(ctx, host)
	}
}

// checkPeer verifies the OS user of the server process at the other end of
// a Unix socket, as libpq's requirepeer.
func checkPeer(c net.Conn, want string) error {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if cerr != nil {
		return fmt.Errorf("requirepeer: could not get peer credentials: %w", cerr)
	}
	u, err := user.LookupId(strconv.Itoa(int(cred.Uid)))
	if err != nil {
		return fmt.Errorf("requirepeer: could not look up local user ID %d: %w", cred.Uid, err)
	}
	if u.Username != want {
		return &KeywordError{Keyword: "requirepeer", Msg: fmt.Sprintf("requirepeer specifies %q, but actual peer user name is %q", want, u.Username)}
	}
	return nil
}
