package testsock

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
)

func TestServeAnswersAndCleansUp(t *testing.T) {
	var sock string
	t.Run("serve", func(t *testing.T) {
		sock = Serve(t, func(c net.Conn) { _, _ = io.Copy(c, c) })
		for range 2 { // each connection is served
			c, err := net.Dial("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Write([]byte("abc")); err != nil {
				t.Fatal(err)
			}
			b := make([]byte, 3)
			if _, err := io.ReadFull(c, b); err != nil || string(b) != "abc" {
				t.Fatalf("read %q, %v", b, err)
			}
			c.Close()
		}
	})
	if _, err := os.Stat(filepath.Dir(sock)); !os.IsNotExist(err) {
		t.Errorf("the socket's directory is still there after the test: %v", err)
	}
	if _, err := net.Dial("unix", sock); err == nil {
		t.Error("the socket still accepts after the test")
	}
}
