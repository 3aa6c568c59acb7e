package conninfo

import (
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

func sockopts(t *testing.T, c net.Conn) map[string]int {
	t.Helper()
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	raw.Control(func(fd uintptr) {
		get := func(level, opt int) int {
			v, err := unix.GetsockoptInt(int(fd), level, opt)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		out["keepalive"] = get(unix.SOL_SOCKET, unix.SO_KEEPALIVE)
		out["user_timeout"] = get(unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
		out["idle"] = get(unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
		out["interval"] = get(unix.IPPROTO_TCP, unix.TCP_KEEPINTVL)
		out["count"] = get(unix.IPPROTO_TCP, unix.TCP_KEEPCNT)
	})
	return out
}
