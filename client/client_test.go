package client

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestDecodeError(t *testing.T) {
	err := decodeError(422, []byte(`{"error":{"kind":"primary_error","message":"integer out of range","sqlstate":"22003"}}`))
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindPrimaryError || e.SQLState != "22003" || e.HTTPStatus != 422 {
		t.Fatalf("%#v", err)
	}
	if e.Error() != "primary_error: integer out of range (SQLSTATE 22003)" {
		t.Fatalf("message %q", e.Error())
	}
	err = decodeError(502, []byte("<html>bad gateway</html>"))
	if !errors.As(err, &e) || e.Kind != "http_error" || e.HTTPStatus != 502 {
		t.Fatalf("non-JSON error body: %#v", err)
	}
}

func TestCallPastItsDeadlineFailsAtOnce(t *testing.T) {
	c := New("/nonexistent.sock")
	defer c.Close()
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	if _, err := c.Call(ctx, "N", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a call whose deadline has passed: %v", err)
	}
	if _, err := c.Call(context.Background(), "N", nil); !errors.Is(err, ErrDaemonUnreachable) {
		t.Fatalf("no daemon: %v", err)
	}
}
