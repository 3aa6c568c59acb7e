package e2e

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/standbyd/standbyd/client"
)

// The payload is limited to channel.max_frame_size minus the 12-byte frame
// header: one byte more is payload_too_large, and nothing is sent.
// claim: api.payload-limit
func TestPayloadLimitIsTheFrameSizeLessTheHeader(t *testing.T) {
	needEnv(t)
	registerHandlers(t)
	d := startDaemon(t, "  max_frame_size: 65536\n")
	d.waitReady(30 * time.Second)
	// The fast path (the Go client's default) and HTTP, whose 413 is the
	// daemon's own answer.
	hc := client.New(d.socket, client.WithHTTP())
	defer hc.Close()
	for name, c := range map[string]*client.Client{"fast path": d.client(), "http": hc} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		// count ignores its payload and answers a few bytes.
		if _, err := c.Call(ctx, "count", make([]byte, 65536-12)); err != nil {
			t.Fatalf("%s: a payload of max_frame_size - 12 bytes: %v", name, err)
		}
		_, err := c.Call(ctx, "count", make([]byte, 65536-12+1))
		cancel()
		var ae *client.Error
		if !errors.As(err, &ae) || ae.Kind != client.KindPayloadTooLarge || ae.HTTPStatus != 413 {
			t.Fatalf("%s: one byte more: %v, want payload_too_large (413)", name, err)
		}
	}
}
