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
	c := d.client()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// count ignores its payload and answers a few bytes.
	if _, err := c.Call(ctx, "count", make([]byte, 65536-12)); err != nil {
		t.Fatalf("a payload of max_frame_size - 12 bytes: %v", err)
	}
	_, err := c.Call(ctx, "count", make([]byte, 65536-12+1))
	var ae *client.Error
	if !errors.As(err, &ae) || ae.Kind != client.KindPayloadTooLarge || ae.HTTPStatus != 413 {
		t.Fatalf("one byte more: %v, want payload_too_large (413)", err)
	}
}
